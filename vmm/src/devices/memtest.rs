//! The memory-slot test port of Mojito's test guests
//! (`abi::guest::MEMTEST_PORT`): a guest asks its VMM to fetch the dirty log
//! of the logged slot or to move that slot, and reads the dirty pages back
//! one index at a time. The VMM carries out the command
//! (`vm::Vm::memtest`); the device only passes it on and hands out the
//! list.

use alloc::collections::VecDeque;

use super::{Effect, PortDevice};

#[derive(Debug, Default)]
pub struct MemTest {
    pages: VecDeque<u32>,
}

impl MemTest {
    /// The page indices the next reads return.
    pub fn set_pages(&mut self, pages: impl IntoIterator<Item = u32>) {
        self.pages = pages.into_iter().collect();
    }
}

impl PortDevice for MemTest {
    fn byte_wide(&self) -> bool {
        false
    }

    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        let v = self.pages.pop_front().unwrap_or(abi::guest::MEMTEST_END);
        for (dst, src) in data.iter_mut().zip(v.to_le_bytes()) {
            *dst = src;
        }
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> Effect {
        data.first().map_or(Effect::None, |&c| Effect::Command(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_pages_then_the_end_and_passes_commands_on() {
        let mut m = MemTest::default();
        m.set_pages([3, 7]);
        let mut d = [0u8; 4];
        m.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 3);
        m.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 7);
        m.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), abi::guest::MEMTEST_END);
        assert_eq!(m.write(0, &[2]), Effect::Command(2));
    }
}
