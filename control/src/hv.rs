//! Hypercalls: the KVM API as `(RAX = request, RDI = handle, RSI = argument)`
//! with the result in RAX (`abi::kvm::mojito`).

use abi::kvm::mojito::{self, MOJITO_HYPERCALL_VMCALL, MOJITO_SYSTEM_HANDLE, mojito_log_read};
use core::sync::atomic::{AtomicBool, Ordering};

static VMCALL: AtomicBool = AtomicBool::new(true);

/// Picks the instruction the boot-info page names.
pub fn init(hypercall: u32) {
    VMCALL.store(hypercall == MOJITO_HYPERCALL_VMCALL, Ordering::Relaxed);
}

/// One hypercall; Ok(value) or Err(errno).
pub fn call(request: u32, handle: u64, arg: u64) -> Result<u64, i32> {
    call_raw(u64::from(request), handle, arg)
}

/// A hypercall with any RAX (to check what the hypervisor makes of codes
/// that are no request).
pub fn call_raw(request: u64, handle: u64, arg: u64) -> Result<u64, i32> {
    let rax: u64;
    // SAFETY: VMCALL/VMMCALL exits to the hypervisor, which preserves every
    // register but RAX; memory named by `arg` may be written (hence no
    // `nomem`).
    unsafe {
        if VMCALL.load(Ordering::Relaxed) {
            core::arch::asm!("vmcall", inlateout("rax") request => rax, in("rdi") handle, in("rsi") arg);
        } else {
            core::arch::asm!("vmmcall", inlateout("rax") request => rax, in("rdi") handle, in("rsi") arg);
        }
    }
    mojito::decode_return(rax)
}

/// A system request.
pub fn system(request: u32, arg: u64) -> Result<u64, i32> {
    call(request, MOJITO_SYSTEM_HANDLE, arg)
}

/// Copies what is new in the hypervisor's log ring to COM1.
pub fn echo_log() {
    let mut buf = [0u8; 512];
    let mut wrote = false;
    loop {
        let mut req = mojito_log_read {
            len: buf.len() as u32,
            buf: buf.as_mut_ptr() as u64,
            ..Default::default()
        };
        match system(
            mojito::MOJITO_READ_LOG,
            &mut req as *mut mojito_log_read as u64,
        ) {
            Ok(0) | Err(_) => {
                if wrote {
                    crate::console::show_prompt();
                }
                return;
            }
            Ok(n) => {
                if req.dropped > 0 {
                    crate::println!(
                        "control: ({} bytes of the hypervisor log were lost)",
                        req.dropped
                    );
                }
                let bytes = &buf[..(n as usize).min(buf.len())];
                crate::console::hide_prompt();
                crate::console::write_bytes(bytes);
                wrote = true;
            }
        }
    }
}

/// Prints the whole of the hypervisor's log ring (the operator's `log`),
/// leaving the unread mark of `echo_log` alone.
pub fn print_whole_log() {
    let mut buf = [0u8; 512];
    let mut at = 0;
    let mut first = true;
    loop {
        let mut req = mojito_log_read {
            flags: mojito::MOJITO_LOG_READ_AT,
            len: buf.len() as u32,
            buf: buf.as_mut_ptr() as u64,
            at,
            ..Default::default()
        };
        match system(
            mojito::MOJITO_READ_LOG,
            &mut req as *mut mojito_log_read as u64,
        ) {
            Ok(0) => return,
            Err(e) => {
                crate::println!("log: MOJITO_READ_LOG failed: -{e}");
                return;
            }
            Ok(n) => {
                if first && req.dropped > 0 {
                    crate::println!("(the ring has dropped the oldest {} bytes)", req.dropped);
                }
                first = false;
                crate::console::write_bytes(&buf[..(n as usize).min(buf.len())]);
                at = req.next;
            }
        }
    }
}

/// Draws `bytes` (at most `MOJITO_CONSOLE_WRITE_MAX`) on the screen.
pub fn screen_write(bytes: &[u8]) -> Result<u64, i32> {
    let arg = mojito::mojito_console_write {
        len: bytes.len() as u32,
        buf: bytes.as_ptr() as u64,
        ..Default::default()
    };
    system(
        mojito::MOJITO_CONSOLE_WRITE,
        &arg as *const mojito::mojito_console_write as u64,
    )
}

/// The machine and the hypervisor, for `info`.
pub fn info() -> Result<mojito::mojito_info, i32> {
    let mut info = mojito::mojito_info::default();
    system(
        mojito::MOJITO_INFO,
        &mut info as *mut mojito::mojito_info as u64,
    )?;
    Ok(info)
}

/// The operator's `layout`: the hypervisor logs where it keeps what
/// (`MOJITO_LOG_LAYOUT`); the lines are echoed like any log line.
pub fn log_layout() {
    match system(mojito::MOJITO_LOG_LAYOUT, 0) {
        Ok(n) => {
            echo_log();
            crate::println!("layout: {n} lines in the hypervisor's log");
        }
        Err(e) => crate::println!("layout: MOJITO_LOG_LAYOUT failed: -{e}"),
    }
}

/// Asks the hypervisor to reset the machine; returns only if it could not.
pub fn reboot() -> i32 {
    echo_log();
    match system(mojito::MOJITO_REBOOT, 0) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

/// Asks the hypervisor to power the machine off.
pub fn power_off() {
    echo_log();
    let _ = system(mojito::MOJITO_POWER_OFF, 0);
}
