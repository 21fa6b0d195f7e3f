//! The memory test's pattern. Every 8-byte word gets a value derived from its
//! own address, and no two addresses get the same value, so a write that
//! lands on the wrong page (two guest pages aliasing one host page, a wrong
//! EPT/NPT entry) reads back wrong somewhere.

/// Multiplying by an odd constant is a bijection on `u64`, and so is XOR
/// with a constant: distinct addresses always get distinct words.
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
/// "MOJITO!!": makes the low words non-zero and easy to spot in a dump.
const SALT: u64 = 0x4d4f_4a49_544f_2121;

/// The word the memory test writes at guest-physical address `addr`.
pub const fn word_at(addr: u64) -> u64 {
    addr.wrapping_mul(MULTIPLIER) ^ SALT
}

#[cfg(test)]
mod tests {
    use super::word_at;

    #[test]
    fn neighbouring_words_differ() {
        let words: Vec<u64> = (0..4096u64).map(|i| word_at(i * 8)).collect();
        let mut sorted = words.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), words.len());
    }

    #[test]
    fn words_a_page_apart_differ() {
        assert_ne!(word_at(0x1000), word_at(0x2000));
        assert_ne!(word_at(0), word_at(0x20_0000));
    }
}
