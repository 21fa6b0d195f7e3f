//! The control domain's shell on arbitrary input: bytes through the line
//! editor (`control/src/shell/line.rs`), every finished line through the
//! command parser and the `show` path resolver (`parse.rs`), and the same
//! bytes as PS/2 scancodes through the keymap (`keymap.rs`). None may
//! panic, and the editor's state stays bounded. The modules are pure and
//! are included by path: the control domain is a bare-metal binary, not a
//! library.

#![no_main]

extern crate alloc;

#[path = "../../control/src/keymap.rs"]
#[allow(dead_code)]
mod keymap;
#[path = "../../control/src/shell/line.rs"]
#[allow(dead_code)]
mod line;
#[path = "../../control/src/shell/parse.rs"]
#[allow(dead_code)]
mod parse;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut editor = line::Editor::new("mojito> ");
    for &b in data {
        let step = editor.key(b);
        assert!(step.echo.len() <= line::LINE_MAX + 64);
        if let Some(line) = step.line {
            assert!(line.len() <= line::LINE_MAX * 2);
            let _ = parse::parse(&line);
            let _ = parse::show_path(&line);
            let _ = parse::closest(&line);
        }
    }
    assert!(editor.render().len() <= line::LINE_MAX + 64);
    let mut map = keymap::Keymap::default();
    for &b in data {
        if let Some(bytes) = map.scancode(b) {
            assert!(bytes.as_slice().iter().all(u8::is_ascii));
        }
    }
});
