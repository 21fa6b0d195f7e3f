//! The control domain's shell on arbitrary input: bytes through the line
//! editor (`control/src/shell/line.rs`), every finished line through the
//! command parser and the `show` path resolver (`parse.rs`), and the same
//! bytes as PS/2 scancodes through the keymap (`keymap.rs`). None may
//! panic, and the editor's state stays bounded. The modules are pure and
//! are included by path: the control domain is a bare-metal binary, not a
//! library.
//!
//! The bytes go through the editor twice: as they come, and shaped — each
//! line after a command word its first byte picks — so that most lines
//! get past the parser's first check (the command word) into the checks of
//! the arguments. Every million inputs it prints how many finished lines
//! named a command, both ways (`cargo xtask fuzz` also gives libFuzzer a
//! dictionary of words and keys, `shell_input.dict`).

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

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;

/// Inputs, finished lines, and lines that named a command (parsed, or
/// refused for their arguments).
static INPUTS: AtomicU64 = AtomicU64::new(0);
static LINES: AtomicU64 = AtomicU64::new(0);
static COMMANDS: AtomicU64 = AtomicU64::new(0);

/// One key into `editor`; a finished line goes through the parser, the
/// `show` path resolver and the suggestions. Counts into `lines` and
/// `commands`.
fn key(editor: &mut line::Editor, b: u8, lines: &AtomicU64, commands: &AtomicU64) {
    let step = editor.key(b);
    assert!(step.echo.len() <= line::LINE_MAX + 64);
    if let Some(line) = step.line {
        assert!(line.len() <= line::LINE_MAX * 2);
        let parsed = parse::parse(&line);
        lines.fetch_add(1, Relaxed);
        if matches!(parsed, Ok(Some(_)) | Err(parse::Error::Usage { .. })) {
            commands.fetch_add(1, Relaxed);
        }
        let _ = parse::show_path(&line);
        let _ = parse::closest(&line);
    }
}

/// The same counts for the shaped pass.
static SHAPED_LINES: AtomicU64 = AtomicU64::new(0);
static SHAPED_COMMANDS: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    // The bytes as they come, editing keys and all.
    let mut editor = line::Editor::new("mojito> ");
    for &b in data {
        key(&mut editor, b, &LINES, &COMMANDS);
    }
    assert!(editor.render().len() <= line::LINE_MAX + 64);
    // The same bytes as the arguments of commands: each line (up to CR or
    // LF) after the command word its first byte picks, so that most lines
    // get past the parser's first check (the word) into the arguments'.
    let mut shaped = line::Editor::new("mojito> ");
    for chunk in data.split(|&b| b == b'\r' || b == b'\n') {
        let Some((&pick, rest)) = chunk.split_first() else {
            continue;
        };
        let spec = &parse::COMMANDS[usize::from(pick) % parse::COMMANDS.len()];
        let keys = spec.name.as_bytes().iter().chain(b" ").chain(rest).chain(b"\r");
        for &b in keys {
            key(&mut shaped, b, &SHAPED_LINES, &SHAPED_COMMANDS);
        }
    }
    assert!(shaped.render().len() <= line::LINE_MAX + 64);
    let mut map = keymap::Keymap::default();
    for &b in data {
        if let Some(bytes) = map.scancode(b) {
            assert!(bytes.as_slice().iter().all(u8::is_ascii));
        }
    }
    if INPUTS.fetch_add(1, Relaxed) % 1_000_000 == 999_999 {
        let share = |c: &AtomicU64, l: &AtomicU64| {
            let (c, l) = (c.load(Relaxed), l.load(Relaxed));
            (l, c, c as f64 * 100.0 / l.max(1) as f64)
        };
        let (l, c, p) = share(&COMMANDS, &LINES);
        let (sl, sc, sp) = share(&SHAPED_COMMANDS, &SHAPED_LINES);
        eprintln!(
            "shell_input: {} inputs; as typed {l} lines, {c} ({p:.1}%) named a command; \
             shaped {sl} lines, {sc} ({sp:.1}%)",
            INPUTS.load(Relaxed)
        );
    }
});
