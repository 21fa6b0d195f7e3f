//! The boot-bundle parser (`abi::bundle`, a cpio newc reader the hypervisor
//! and the control domain both run on the bundle from the boot medium) on
//! arbitrary bytes: it must refuse or accept without panicking, and an
//! accepted bundle must read back every file it counted, inside the input.

#![no_main]

use abi::bundle::Bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = Bundle::parse(data) else {
        return;
    };
    let range = data.as_ptr_range();
    let mut n = 0;
    for f in bundle.files() {
        n += 1;
        let inside = |s: &[u8]| {
            s.is_empty() || (range.contains(&s.as_ptr()) && s.as_ptr_range().end <= range.end)
        };
        assert!(inside(f.data), "{}: data outside the input", f.name);
        assert!(inside(f.name.as_bytes()), "a name outside the input");
        assert!(bundle.get(f.name).is_some());
    }
    assert_eq!(n, bundle.len(), "files read back != files counted");
});
