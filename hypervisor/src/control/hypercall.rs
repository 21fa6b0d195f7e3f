//! The control domain's hypercalls: the KVM API over (RAX = request,
//! RDI = handle, RSI = argument), answered in RAX with a value or -errno
//! (`abi::kvm::mojito`). Each call is decoded first — the handle, the
//! request, the argument copied out of control-domain memory and checked —
//! and only then carried out (seL4's decode/invoke split).

use super::ControlState;
use crate::guest::GuestRam;
use crate::mm::GuestPhys;
use crate::virt::Frames;
use crate::vm::VmEnv;
use abi::kvm::errno::{EFAULT, EINVAL, EIO};
use abi::kvm::mojito::{self, MOJITO_SYSTEM_HANDLE, mojito_log_read};
use abi::kvm::{self as req, KVM_API_VERSION};

/// How a hypercall ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Value(u64),
    Error(i32),
    /// The control domain asked for power-off: the caller turns the machine off.
    PowerOff,
}

impl Outcome {
    /// What RAX gets.
    pub fn rax(self) -> u64 {
        match self {
            Self::Value(v) => v,
            Self::Error(e) => mojito::error_return(e),
            Self::PowerOff => mojito::error_return(EIO),
        }
    }
}

/// Plain data that may be copied to and from guest memory byte for byte.
///
/// # Safety
/// Every bit pattern must be a valid value (integers and arrays of them,
/// no padding the compiler may assume anything about).
pub unsafe trait Pod: Copy {}

// SAFETY: `abi` structs are `#[repr(C)]` integers and integer arrays with
// explicit padding fields (asserted in abi), so any bytes are a valid value.
unsafe impl Pod for mojito_log_read {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::mojito::mojito_boot_info {}

/// Copies a `T` out of control-domain memory (before anything checks it:
/// no double fetch, DESIGN.md D7).
pub fn read_arg<T: Pod>(ram: &GuestRam, gpa: u64) -> Result<T, i32> {
    let mut v = core::mem::MaybeUninit::<T>::zeroed();
    // SAFETY: the slice covers exactly the (zeroed, so initialised) bytes
    // of `v`, and `T: Pod` makes whatever is copied in a valid `T`.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), core::mem::size_of::<T>())
    };
    if !ram.read(GuestPhys::new(gpa), bytes) {
        return Err(EFAULT);
    }
    // SAFETY: initialised above (zeroed, then overwritten).
    Ok(unsafe { v.assume_init() })
}

/// Copies a `T` into control-domain memory.
pub fn write_arg<T: Pod>(ram: &mut GuestRam, gpa: u64, v: &T) -> Result<(), i32> {
    // SAFETY: `T: Pod` has no uninitialised bytes worth hiding (explicit
    // padding fields), and the slice covers exactly `v`.
    let bytes = unsafe {
        core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>())
    };
    if ram.write(GuestPhys::new(gpa), bytes) {
        Ok(())
    } else {
        Err(EFAULT)
    }
}

/// What a handle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    System,
}

/// A decoded request, its argument already copied and checked.
#[derive(Clone, Copy, Debug)]
enum Request {
    GetApiVersion,
    CheckExtension(u64),
    ReadLog { gpa: u64, arg: mojito_log_read },
    PowerOff,
}

/// Decodes a call: which object, which request, with what argument.
fn decode(ram: &GuestRam, rax: u64, handle: u64, arg: u64) -> Result<(Target, Request), i32> {
    let target = match handle {
        MOJITO_SYSTEM_HANDLE => Target::System,
        // No VM or vCPU objects exist yet: every other handle is bad.
        _ => return Err(abi::kvm::errno::EBADF),
    };
    // Bits 63:32 of RAX must be zero: such a code is no request at all.
    let Ok(code) = u32::try_from(rax) else {
        return Err(EINVAL);
    };
    let request = match (target, code) {
        (Target::System, req::KVM_GET_API_VERSION) => Request::GetApiVersion,
        (Target::System, req::KVM_CHECK_EXTENSION) => Request::CheckExtension(arg),
        (Target::System, mojito::MOJITO_READ_LOG) => {
            let a: mojito_log_read = read_arg(ram, arg)?;
            if a.flags != 0 || a.padding != [0; 4] {
                return Err(EINVAL);
            }
            Request::ReadLog { gpa: arg, arg: a }
        }
        (Target::System, mojito::MOJITO_POWER_OFF) => Request::PowerOff,
        // KVM's answer to an unknown ioctl on a system fd.
        (Target::System, _) => return Err(EINVAL),
    };
    Ok((target, request))
}

/// Decodes and carries out one hypercall of the control domain.
pub fn dispatch(
    state: &mut ControlState,
    env: &mut VmEnv,
    _frames: &spin::Mutex<Frames>,
    rax: u64,
    handle: u64,
    arg: u64,
) -> Outcome {
    let (_, request) = match decode(&env.ram, rax, handle, arg) {
        Ok(d) => d,
        Err(e) => return Outcome::Error(e),
    };
    match request {
        Request::GetApiVersion => Outcome::Value(u64::from(KVM_API_VERSION)),
        Request::CheckExtension(cap) => Outcome::Value(check_extension(cap)),
        Request::ReadLog { gpa, arg } => read_log(state, &mut env.ram, gpa, arg),
        Request::PowerOff => Outcome::PowerOff,
    }
}

/// KVM_CHECK_EXTENSION: truthful. No VM or vCPU request is served yet, so
/// no capability is offered yet.
fn check_extension(_cap: u64) -> u64 {
    0
}

/// MOJITO_READ_LOG: copies unread log bytes into the control domain's
/// buffer, through a bounded bounce buffer.
fn read_log(
    state: &mut ControlState,
    ram: &mut GuestRam,
    gpa: u64,
    mut arg: mojito_log_read,
) -> Outcome {
    let end = arg.buf.checked_add(u64::from(arg.len));
    if end.is_none_or(|end| end > ram.size()) {
        return Outcome::Error(EFAULT);
    }
    let mut chunk = [0u8; 256];
    let mut copied = 0u32;
    let mut dropped = 0u64;
    while copied < arg.len {
        let want = ((arg.len - copied) as usize).min(chunk.len());
        let (n, lost, next) = crate::log::read_since(state.log_cursor, &mut chunk[..want]);
        dropped += lost;
        state.log_cursor = next;
        if n == 0 {
            break;
        }
        if !ram.write(GuestPhys::new(arg.buf + u64::from(copied)), &chunk[..n]) {
            return Outcome::Error(EFAULT);
        }
        copied += n as u32;
    }
    arg.copied = copied;
    arg.dropped = dropped;
    match write_arg(ram, gpa, &arg) {
        Ok(()) => Outcome::Value(u64::from(copied)),
        Err(e) => Outcome::Error(e),
    }
}
