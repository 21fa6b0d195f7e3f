//! The control domain's hypercalls: the KVM API over (RAX = request,
//! RDI = handle, RSI = argument), answered in RAX with a value or -errno
//! (`abi::kvm::mojito`). Each call is decoded first — the handle, the
//! request, the argument copied out of control-domain memory and checked —
//! and only then carried out (seL4's decode/invoke split).

use super::kvm::RUN_PAGES;
use super::objects::{Handle, KvmVcpu, MAX_MEMSLOTS, MAX_VCPUS, Objects};
use super::{ControlState, Locked};
use crate::guest::GuestRam;
use crate::mm::GuestPhys;
use crate::vcpu::cpuid::CpuidTable;
use crate::vcpu::lazy::HostXstate;
use crate::virt::{Backend, Frames, GuestCpu};
use crate::vm::VmEnv;

/// RFLAGS.IF (SDM Vol. 1 3.4.3.3).
const RFLAGS_IF: u64 = 1 << 9;
use abi::kvm::errno::{EBADF, EBUSY, EEXIST, EFAULT, EINVAL, EIO, ENOMEM, ENOTTY, ENXIO};
use abi::kvm::mojito::{self, MOJITO_SYSTEM_HANDLE, mojito_log_read, mojito_run_pages};
use abi::kvm::{
    self as req, KVM_API_VERSION, kvm_enable_cap, kvm_fpu, kvm_regs, kvm_sregs,
    kvm_userspace_memory_region, kvm_xcrs,
};

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
unsafe impl Pod for abi::kvm::mojito::mojito_metadata_pool {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::mojito::mojito_info {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::mojito::mojito_console_write {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_dirty_log {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_interrupt {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_msi {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_coalesced_mmio_zone {}
// SAFETY: as above (its padding fields are explicit).
unsafe impl Pod for abi::kvm::mojito::mojito_coalesced_ring {}
// SAFETY: as above (a byte array).
unsafe impl Pod for abi::kvm::kvm_lapic_state {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_mp_state {}
// SAFETY: as above (the entry array is empty).
unsafe impl Pod for abi::kvm::kvm_irq_routing {}
// SAFETY: as above; its union's members are integer structs of which any
// bytes are a valid value.
unsafe impl Pod for abi::kvm::kvm_irq_routing_entry {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_guest_debug {}
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

// SAFETY: as above (KVM structures, byte-identical to linux/kvm.h).
unsafe impl Pod for abi::kvm::kvm_userspace_memory_region {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_regs {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_sregs {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::mojito::mojito_run_pages {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_cpuid_entry2 {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_msr_entry {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_fpu {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_xcrs {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_enable_cap {}
// SAFETY: as above (its `pad` fields are explicit).
unsafe impl Pod for abi::kvm::kvm_msr_filter {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::kvm_xen_hvm_config {}
// SAFETY: as above.
unsafe impl Pod for abi::kvm::mojito::mojito_start_cpu {}
// SAFETY: as above (its `pad` and `reserved` fields are explicit).
unsafe impl Pod for abi::kvm::kvm_vcpu_events {}

/// Everything a hypercall may touch besides the control domain itself:
/// this CPU's back end, and what the control domain's vCPUs share.
pub struct Ctx<'a, B: Backend> {
    pub backend: &'a mut B,
    pub shared: &'a spin::Mutex<Locked<B>>,
    pub frames: &'a spin::Mutex<Frames>,
    pub xstate: &'a HostXstate,
    pub cpuid: &'a CpuidTable,
}

/// A request's view of `Ctx`, with the shared objects locked.
struct Req<'a, B: Backend> {
    backend: &'a mut B,
    objects: &'a mut Objects<B>,
    state: &'a mut ControlState,
    frames: &'a spin::Mutex<Frames>,
    xstate: &'a HostXstate,
    cpuid: &'a CpuidTable,
}

/// A decoded request, its argument already copied and checked.
enum Request {
    GetApiVersion,
    SignalMsi(abi::kvm::kvm_msi),
    SetGsiRouting(u64),
    GetLapic(u64),
    SetLapic(u64),
    GetMpState(u64),
    SetMpState(u32),
    GetVcpuEvents(u64),
    SetVcpuEvents(abi::kvm::kvm_vcpu_events),
    CheckExtension(u64),
    GetVcpuMmapSize,
    CreateVm(u64),
    ReadLog {
        gpa: u64,
        arg: mojito_log_read,
    },
    MetadataPool {
        gpa: u64,
        arg: mojito::mojito_metadata_pool,
    },
    GetDirtyLog(abi::kvm::kvm_dirty_log),
    Interrupt(u32),
    SetGuestDebug(abi::kvm::kvm_guest_debug),
    /// `KVM_XEN_HVM_CONFIG`.
    XenHvmConfig(abi::kvm::kvm_xen_hvm_config),
    /// `KVM_X86_SET_MSR_FILTER`, checked and copied (None: no filtering).
    SetMsrFilter(Option<crate::vcpu::msr_filter::MsrFilter>),
    PowerOff,
    /// `MOJITO_INFO`'s argument is read (and checked) when it is carried
    /// out: 256 bytes here would make every request a larger value to move
    /// (measured: ~120 instructions more per hypercall).
    Info(u64),
    Reboot,
    LogLayout,
    KickCpu(u64),
    ConsoleWrite(mojito::mojito_console_write),
    Close,
    SetMemory(kvm_userspace_memory_region),
    CreateVcpu(u64),
    SetRunPages(mojito_run_pages),
    RegisterCoalesced(abi::kvm::kvm_coalesced_mmio_zone),
    UnregisterCoalesced(abi::kvm::kvm_coalesced_mmio_zone),
    SetCoalescedRing(u64),
    Run,
    GetRegs(u64),
    SetRegs(kvm_regs),
    GetSregs(u64),
    SetSregs(kvm_sregs),
    GetSupportedCpuid(u64),
    SetCpuid2(u64),
    GetMsrIndexList(u64),
    GetMsrs(u64),
    SetMsrs(u64),
    GetFpu(u64),
    SetFpu(kvm_fpu),
    GetXsave(u64),
    SetXsave(u64),
    GetXcrs(u64),
    SetXcrs(kvm_xcrs),
    EnableCapVm(kvm_enable_cap),
    EnableCapVcpu,
}

/// Decodes a call: which object, which request, with what argument.
fn decode<B: Backend>(
    objects: &Objects<B>,
    ram: &GuestRam,
    rax: u64,
    handle: u64,
    arg: u64,
) -> Result<(Option<Handle>, Request), i32> {
    let target = match handle {
        MOJITO_SYSTEM_HANDLE => None,
        h => Some(objects.lookup(h).ok_or(EBADF)?),
    };
    // Bits 63:32 of RAX must be zero: such a code is no request at all.
    let code = u32::try_from(rax).map_err(|_| match target {
        Some(Handle::Vm(_)) => ENOTTY,
        _ => EINVAL,
    })?;
    let request = match (target, code) {
        (_, mojito::MOJITO_CLOSE) if target.is_some() => Request::Close,
        (None, req::KVM_GET_API_VERSION) => Request::GetApiVersion,
        (None | Some(Handle::Vm(_)), req::KVM_CHECK_EXTENSION) => Request::CheckExtension(arg),
        (None, req::KVM_GET_VCPU_MMAP_SIZE) => Request::GetVcpuMmapSize,
        (None, req::KVM_CREATE_VM) => Request::CreateVm(arg),
        (None, mojito::MOJITO_READ_LOG) => {
            let a: mojito_log_read = read_arg(ram, arg)?;
            let at_ok = a.flags & mojito::MOJITO_LOG_READ_AT != 0 || a.at == 0;
            if a.flags & !mojito::MOJITO_LOG_READ_AT != 0
                || a.next != 0
                || a.padding != [0; 2]
                || !at_ok
            {
                return Err(EINVAL);
            }
            Request::ReadLog { gpa: arg, arg: a }
        }
        // Their integer argument is 0: anything else is no request of ours.
        (None, mojito::MOJITO_POWER_OFF | mojito::MOJITO_REBOOT | mojito::MOJITO_LOG_LAYOUT)
            if arg != 0 =>
        {
            return Err(EINVAL);
        }
        (None, mojito::MOJITO_POWER_OFF) => Request::PowerOff,
        (None, mojito::MOJITO_REBOOT) => Request::Reboot,
        (None, mojito::MOJITO_LOG_LAYOUT) => Request::LogLayout,
        (None, mojito::MOJITO_CONSOLE_WRITE) => {
            let a: mojito::mojito_console_write = read_arg(ram, arg)?;
            if a.flags != 0 || a.padding != [0; 2] || a.len > mojito::MOJITO_CONSOLE_WRITE_MAX {
                return Err(EINVAL);
            }
            if !ram.covers(GuestPhys::new(a.buf), u64::from(a.len)) {
                return Err(EFAULT);
            }
            Request::ConsoleWrite(a)
        }
        (None, mojito::MOJITO_INFO) => Request::Info(arg),
        (None, mojito::MOJITO_KICK_CPU) => Request::KickCpu(arg),
        (None, mojito::MOJITO_METADATA_POOL) => {
            let a: mojito::mojito_metadata_pool = read_arg(ram, arg)?;
            if a.flags & !mojito::MOJITO_POOL_SET_LIMIT != 0 || a.pad != 0 || a.padding != [0; 3] {
                return Err(EINVAL);
            }
            Request::MetadataPool { gpa: arg, arg: a }
        }
        (Some(Handle::Vm(_)), req::KVM_SET_USER_MEMORY_REGION) => {
            Request::SetMemory(read_arg(ram, arg)?)
        }
        (Some(Handle::Vm(_)), req::KVM_CREATE_VCPU) => Request::CreateVcpu(arg),
        (Some(Handle::Vm(_)), req::KVM_GET_DIRTY_LOG) => Request::GetDirtyLog(read_arg(ram, arg)?),
        (Some(Handle::Vcpu(..)), mojito::MOJITO_SET_RUN_PAGES) => {
            let a: mojito_run_pages = read_arg(ram, arg)?;
            if a.flags != 0 || a.padding != [0; 6] {
                return Err(EINVAL);
            }
            Request::SetRunPages(a)
        }
        (Some(Handle::Vcpu(..)), req::KVM_RUN) => Request::Run,
        (Some(Handle::Vcpu(..)), req::KVM_SET_GUEST_DEBUG) => {
            Request::SetGuestDebug(read_arg::<abi::kvm::kvm_guest_debug>(ram, arg)?)
        }
        (Some(Handle::Vcpu(..)), req::KVM_INTERRUPT) => {
            Request::Interrupt(read_arg::<abi::kvm::kvm_interrupt>(ram, arg)?.irq)
        }
        (Some(Handle::Vcpu(..)), req::KVM_GET_REGS) => Request::GetRegs(arg),
        (Some(Handle::Vcpu(..)), req::KVM_SET_REGS) => Request::SetRegs(read_arg(ram, arg)?),
        (Some(Handle::Vcpu(..)), req::KVM_GET_SREGS) => Request::GetSregs(arg),
        (Some(Handle::Vcpu(..)), req::KVM_SET_SREGS) => Request::SetSregs(read_arg(ram, arg)?),
        (None, req::KVM_GET_SUPPORTED_CPUID) => Request::GetSupportedCpuid(arg),
        (None, req::KVM_GET_MSR_INDEX_LIST) => Request::GetMsrIndexList(arg),
        (Some(Handle::Vcpu(..)), req::KVM_SET_CPUID2) => Request::SetCpuid2(arg),
        (Some(Handle::Vcpu(..)), req::KVM_GET_MSRS) => Request::GetMsrs(arg),
        (Some(Handle::Vcpu(..)), req::KVM_SET_MSRS) => Request::SetMsrs(arg),
        (Some(Handle::Vcpu(..)), req::KVM_GET_FPU) => Request::GetFpu(arg),
        (Some(Handle::Vcpu(..)), req::KVM_SET_FPU) => Request::SetFpu(read_arg(ram, arg)?),
        (Some(Handle::Vcpu(..)), req::KVM_GET_XSAVE) => Request::GetXsave(arg),
        (Some(Handle::Vcpu(..)), req::KVM_SET_XSAVE) => Request::SetXsave(arg),
        (Some(Handle::Vcpu(..)), req::KVM_GET_XCRS) => Request::GetXcrs(arg),
        (Some(Handle::Vcpu(..)), req::KVM_SET_XCRS) => Request::SetXcrs(read_arg(ram, arg)?),
        (Some(Handle::Vm(_)), req::KVM_ENABLE_CAP) => Request::EnableCapVm(read_arg(ram, arg)?),
        (Some(Handle::Vm(_)), req::KVM_SIGNAL_MSI) => Request::SignalMsi(read_arg(ram, arg)?),
        (Some(Handle::Vm(_)), req::KVM_REGISTER_COALESCED_MMIO) => {
            Request::RegisterCoalesced(read_arg(ram, arg)?)
        }
        (Some(Handle::Vm(_)), req::KVM_UNREGISTER_COALESCED_MMIO) => {
            Request::UnregisterCoalesced(read_arg(ram, arg)?)
        }
        (Some(Handle::Vm(_)), mojito::MOJITO_SET_COALESCED_RING) => {
            let a: abi::kvm::mojito::mojito_coalesced_ring = read_arg(ram, arg)?;
            if a.flags != 0 || a.pad != 0 || a.padding != [0; 2] {
                return Err(EINVAL);
            }
            Request::SetCoalescedRing(a.gpa)
        }
        (Some(Handle::Vm(_)), req::KVM_SET_GSI_ROUTING) => Request::SetGsiRouting(arg),
        (Some(Handle::Vcpu(..)), req::KVM_GET_LAPIC) => Request::GetLapic(arg),
        (Some(Handle::Vcpu(..)), req::KVM_SET_LAPIC) => Request::SetLapic(arg),
        (Some(Handle::Vcpu(..)), req::KVM_GET_MP_STATE) => Request::GetMpState(arg),
        (Some(Handle::Vcpu(..)), req::KVM_GET_VCPU_EVENTS) => Request::GetVcpuEvents(arg),
        (Some(Handle::Vcpu(..)), req::KVM_SET_VCPU_EVENTS) => {
            Request::SetVcpuEvents(read_arg(ram, arg)?)
        }
        (Some(Handle::Vcpu(..)), req::KVM_SET_MP_STATE) => {
            Request::SetMpState(read_arg::<abi::kvm::kvm_mp_state>(ram, arg)?.mp_state)
        }
        (Some(Handle::Vm(_)), req::KVM_XEN_HVM_CONFIG) => {
            Request::XenHvmConfig(read_arg(ram, arg)?)
        }
        (Some(Handle::Vm(_)), req::KVM_X86_SET_MSR_FILTER) => {
            Request::SetMsrFilter(read_msr_filter(ram, arg)?)
        }
        (Some(Handle::Vcpu(..)), req::KVM_ENABLE_CAP) => {
            let _: kvm_enable_cap = read_arg(ram, arg)?;
            Request::EnableCapVcpu
        }
        // KVM's answers to an unknown ioctl: -ENOTTY on a VM fd, -EINVAL on
        // system and vCPU fds (DESIGN.md D1).
        (Some(Handle::Vm(_)), _) => return Err(ENOTTY),
        (_, _) => return Err(EINVAL),
    };
    Ok((target, request))
}

/// Decodes and carries out one hypercall of the control domain.
pub fn dispatch<B: Backend>(
    ctx: &mut Ctx<'_, B>,
    cd: &mut VmEnv,
    rax: u64,
    handle: u64,
    arg: u64,
) -> Outcome {
    dispatch_once(ctx, cd, rax, handle, arg, false)
}

fn dispatch_once<B: Backend>(
    ctx: &mut Ctx<'_, B>,
    cd: &mut VmEnv,
    rax: u64,
    handle: u64,
    arg: u64,
    retried: bool,
) -> Outcome {
    // KVM_RUN, the request of every forwarded exit's round trip, has no
    // argument: it goes straight to the run loop, without the decoded
    // `Request` (a value of several hundred bytes to move; measured: ~100
    // instructions a round trip).
    // The VM is checked out of the shared table while it runs, so the
    // other vCPUs of the control domain go on meanwhile (D2).
    if rax == u64::from(req::KVM_RUN) {
        let out = {
            let mut l = ctx.shared.lock();
            match l.objects.lookup(handle) {
                Some(Handle::Vcpu(i, slot)) => Some(l.objects.checkout(i).map(|vm| (i, slot, vm))),
                _ => None,
            }
        };
        match out {
            Some(Err(e)) => return Outcome::Error(e),
            Some(Ok((i, slot, mut vm))) => {
                if let Some(n) = vm.intrs.on_cpu.get_mut(crate::arch::percpu::index()) {
                    *n += 1;
                }
                if super::cpus::several() && super::cpus::enter_run() {
                    vm.intrs.alongside += 1;
                }
                let r = super::kvm::run(ctx.backend, &mut vm, slot, cd, ctx.frames, ctx.xstate);
                super::cpus::leave_run();
                if super::cpus::several() {
                    release(ctx.backend, &mut vm);
                }
                ctx.shared.lock().objects.checkin(i, vm);
                return match r {
                    Ok(v) => Outcome::Value(v),
                    Err(e) => Outcome::Error(e),
                };
            }
            None => {}
        }
    }
    if rax == u64::from(mojito::MOJITO_START_CPU) && handle == MOJITO_SYSTEM_HANDLE {
        return match start_cpu(ctx, &cd.ram, arg) {
            Ok(v) => Outcome::Value(v),
            Err(e) => Outcome::Error(e),
        };
    }
    // A reset waits for the other CPUs to leave VMX/SVM (`stop_aps`): one
    // waiting for the lock could not.
    #[cfg(target_os = "none")]
    if rax == u64::from(mojito::MOJITO_REBOOT) && handle == MOJITO_SYSTEM_HANDLE && arg == 0 {
        crate::arch::power::reboot();
    }
    let mut locked = ctx.shared.lock();
    let super::Locked { objects, state } = &mut *locked;
    let mut r = Req {
        backend: &mut *ctx.backend,
        objects,
        state,
        frames: ctx.frames,
        xstate: ctx.xstate,
        cpuid: ctx.cpuid,
    };
    let (target, request) = match decode(r.objects, &cd.ram, rax, handle, arg) {
        Ok(d) => d,
        Err(e) => return Outcome::Error(e),
    };
    if let Request::Run = request {
        // The handle became a vCPU's after the look above (another vCPU of
        // the control domain made it): RUN runs without the lock, so once
        // more from the top.
        drop(locked);
        return if retried {
            Outcome::Error(EBUSY)
        } else {
            dispatch_once(ctx, cd, rax, handle, arg, true)
        };
    }
    let result = invoke(&mut r, cd, target, request, handle);
    // With several control-domain vCPUs, a VM's next request may come from
    // another CPU: nothing of it may stay cached in this one's hardware.
    if super::cpus::several()
        && let Some(Handle::Vm(i) | Handle::Vcpu(i, _)) = target
        && let Some(vm) = r.objects.vm(i)
    {
        release(r.backend, vm);
    }
    match result {
        Ok(Some(v)) => Outcome::Value(v),
        Ok(None) => Outcome::PowerOff,
        Err(e) => Outcome::Error(e),
    }
}

/// Leaves nothing of `vm`'s vCPUs cached in this CPU (`Backend::release`).
pub fn release<B: Backend>(backend: &mut B, vm: &mut super::objects::KvmVm<B>) {
    for vc in vm.vcpus.iter_mut().flatten() {
        backend.release(&mut vc.cpu);
    }
}

/// `MOJITO_START_CPU`: checked here, carried out by that CPU, which
/// answers (`control::cpus`). Every VM is released from this CPU first:
/// from now on any CPU may run it.
fn start_cpu<B: Backend>(ctx: &mut Ctx<'_, B>, ram: &GuestRam, gpa: u64) -> Result<u64, i32> {
    let a: mojito::mojito_start_cpu = read_arg(ram, gpa)?;
    let canonical = |v: u64| ((v as i64) << 16 >> 16) as u64 == v;
    if a.flags != 0 || a.padding != [0; 4] || !canonical(a.rip) || !canonical(a.rsp) {
        return Err(EINVAL);
    }
    {
        let mut l = ctx.shared.lock();
        for i in 0..super::objects::MAX_VMS {
            if let Some(vm) = l.objects.vm(i) {
                release(ctx.backend, vm);
            }
        }
    }
    super::cpus::start(
        a.cpu,
        super::cpus::Start {
            rip: a.rip,
            rsp: a.rsp,
            rdi: a.rdi,
        },
    )
    .map(|()| 0)
}

fn invoke<B: Backend>(
    ctx: &mut Req<'_, B>,
    cd: &mut VmEnv,
    target: Option<Handle>,
    request: Request,
    handle: u64,
) -> Result<Option<u64>, i32> {
    let (vm_index, slot) = match target {
        Some(Handle::Vm(i)) => (i, 0),
        Some(Handle::Vcpu(i, slot)) => {
            // The handlers find this vCPU's extended state and MSRs in
            // the VM's `env`.
            ctx.objects.vm_here(i)?.select(slot).ok_or(EBADF)?;
            (i, slot)
        }
        None => (0, 0),
    };
    let v = match request {
        Request::GetApiVersion => u64::from(KVM_API_VERSION),
        Request::CheckExtension(cap) => check_extension(cap),
        Request::GetVcpuMmapSize => RUN_PAGES * 4096,
        Request::CreateVm(kind) => {
            // KVM_X86_DEFAULT_VM (0) is the only type.
            if kind != 0 {
                return Err(EINVAL);
            }
            ctx.objects
                .create_vm(&mut ctx.frames.lock(), ctx.cpuid, ctx.xstate)?
        }
        Request::ReadLog { gpa, arg } => read_log(ctx.state, &mut cd.ram, gpa, arg)?,
        Request::PowerOff => return Ok(None),
        Request::KickCpu(cpu) => super::cpus::kick(cpu).map(|()| 0)?,
        Request::Info(gpa) => {
            // Copied once, then checked (D7), as `decode` does for others.
            let mut arg: mojito::mojito_info = read_arg(&cd.ram, gpa)?;
            if arg.flags != 0
                || arg.platform != 0
                || arg.rtc_unix_s != 0
                || arg.rtc_tsc != 0
                || arg.padding != [0; 5]
            {
                return Err(EINVAL);
            }
            let free = ctx.frames.lock().stats().free * 4096;
            super::info::fill(&mut arg, cd.ram.size(), free);
            write_arg(&mut cd.ram, gpa, &arg)?;
            0
        }
        Request::ConsoleWrite(a) => console_write(&cd.ram, &a)?,
        Request::LogLayout => super::layout::log(&*ctx.backend, ctx.objects, &ctx.state.layout)?,
        Request::Reboot => {
            // The control domain has stopped its VMs. (Host unit tests
            // have no machine to reset.)
            #[cfg(target_os = "none")]
            crate::arch::power::reboot();
            #[cfg(not(target_os = "none"))]
            return Err(EIO);
        }
        Request::MetadataPool { gpa, mut arg } => {
            let mut frames = ctx.frames.lock();
            if arg.flags & mojito::MOJITO_POOL_SET_LIMIT != 0 {
                frames.set_limit(arg.limit);
            }
            let stats = frames.stats();
            arg.total = stats.total;
            arg.free = stats.free;
            arg.available = frames.available();
            drop(frames);
            write_arg(&mut cd.ram, gpa, &arg)?;
            0
        }
        Request::Close => ctx
            .objects
            .close(ctx.backend, &mut ctx.frames.lock(), handle)?,
        Request::SetMemory(r) => {
            ctx.objects
                .set_memory(ctx.backend, &mut ctx.frames.lock(), vm_index, &r)?
        }
        Request::CreateVcpu(id) => ctx.objects.create_vcpu(
            ctx.backend,
            &mut ctx.frames.lock(),
            ctx.xstate,
            vm_index,
            id,
        )?,
        Request::XenHvmConfig(c) => {
            let xen = super::xen::config(&c).map_err(|super::xen::Refused| EINVAL)?;
            ctx.objects.vm_here(vm_index)?.env.xen = xen;
            0
        }
        Request::SetMsrFilter(filter) => {
            ctx.objects.vm_here(vm_index)?.env.msr_filter = filter;
            0
        }
        Request::SetGuestDebug(debug) => {
            let vm = ctx.objects.vm_here(vm_index)?;
            let vc = vm
                .vcpus
                .get_mut(slot)
                .and_then(Option::as_mut)
                .ok_or(EBADF)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            super::kvm::set_guest_debug(vc, &mut vm.env, &debug)?
        }
        Request::Interrupt(irq) => {
            // KVM with the irqchip in userspace: a vector ≥ 256 is -EINVAL;
            // a new one replaces one still queued. With the split irqchip
            // (ExtINT from the VMM's 8259) one still queued is -EEXIST.
            let vc = vcpu_of(ctx.objects, vm_index, slot)?;
            let vector = u8::try_from(irq).map_err(|_| EINVAL)?;
            if vc.lapic.is_some() && vc.irq.is_some() {
                return Err(EEXIST);
            }
            vc.irq = Some(vector);
            0
        }
        Request::SetGsiRouting(gpa) => {
            let vm = ctx.objects.vm_here(vm_index)?;
            vm.routes = super::routing::set(&cd.ram, gpa, vm.split_irqchip)?;
            0
        }
        Request::SignalMsi(m) => super::lapic::signal_msi(ctx.objects.vm_here(vm_index)?, &m)?,
        Request::RegisterCoalesced(z) => {
            ctx.objects.vm_here(vm_index)?.coalesced.register(&z)?;
            0
        }
        Request::UnregisterCoalesced(z) => {
            ctx.objects.vm_here(vm_index)?.coalesced.unregister(&z)?;
            0
        }
        Request::SetCoalescedRing(gpa) => {
            // One whole page of control-domain RAM, or 0 for none.
            let ring = if gpa == 0 {
                None
            } else if gpa.is_multiple_of(4096) && cd.ram.covers(GuestPhys::new(gpa), 4096) {
                Some(gpa)
            } else {
                return Err(EINVAL);
            };
            ctx.objects.vm_here(vm_index)?.coalesced.set_ring(ring);
            0
        }
        Request::GetLapic(gpa) => {
            let vc = vcpu_of(ctx.objects, vm_index, slot)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            write_arg(&mut cd.ram, gpa, &super::lapic::get(vc)?)?;
            0
        }
        Request::SetLapic(gpa) => {
            // 1 KiB: read here rather than carried in `Request`.
            let s: abi::kvm::kvm_lapic_state = read_arg(&cd.ram, gpa)?;
            let vc = vcpu_of(ctx.objects, vm_index, slot)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            super::lapic::set(vc, &s)?
        }
        Request::GetMpState(gpa) => {
            let vc = vcpu_of(ctx.objects, vm_index, slot)?;
            let state = abi::kvm::kvm_mp_state {
                mp_state: super::lapic::mp_state(vc),
            };
            write_arg(&mut cd.ram, gpa, &state)?;
            0
        }
        Request::SetMpState(state) => {
            let vc = vcpu_of(ctx.objects, vm_index, slot)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            let interrupts_on = vc.cpu.rflags() & RFLAGS_IF != 0;
            super::lapic::set_mp_state(vc, state, interrupts_on)?
        }
        Request::GetDirtyLog(log) => {
            let vm = ctx.objects.vm_here(vm_index)?;
            super::dirty::get_log(ctx.backend, &mut ctx.frames.lock(), vm, &mut cd.ram, &log)?
        }
        Request::SetRunPages(p) => {
            let len = u64::from(p.count) * 4096;
            if u64::from(p.count) != RUN_PAGES
                || !p.gpa.is_multiple_of(4096)
                || !cd.ram.covers(GuestPhys::new(p.gpa), len)
            {
                return Err(EINVAL);
            }
            let vc = vcpu_of(ctx.objects, vm_index, slot)?;
            vc.run_pages = Some(p.gpa);
            0
        }
        // `dispatch_once` runs it, without the lock.
        Request::Run => return Err(EBUSY),
        Request::GetVcpuEvents(gpa) => {
            let vc = vcpu_of(ctx.objects, vm_index, slot)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            write_arg(&mut cd.ram, gpa, &super::events::get(vc))?;
            0
        }
        Request::SetVcpuEvents(e) => {
            let vc = vcpu_of(ctx.objects, vm_index, slot)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            super::events::set(vc, &e)?;
            0
        }
        Request::GetRegs(gpa) => {
            let vc = vcpu_of(ctx.objects, vm_index, slot)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            write_arg(&mut cd.ram, gpa, &super::kvm::get_regs(&mut vc.cpu))?;
            0
        }
        Request::SetRegs(r) => {
            let vc = vcpu_of(ctx.objects, vm_index, slot)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            super::kvm::set_regs(&mut vc.cpu, &r);
            // A halted vCPU wakes for interrupts as its new IF says.
            vc.halted_if = r.rflags & RFLAGS_IF != 0;
            0
        }
        Request::GetSregs(gpa) => {
            let vm = ctx.objects.vm_here(vm_index)?;
            let vc = vm
                .vcpus
                .get_mut(slot)
                .and_then(Option::as_mut)
                .ok_or(EBADF)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            let mut s = super::kvm::get_sregs::<B>(&vc.cpu, &vm.env);
            if let Some(l) = vc.lapic.as_ref() {
                s.apic_base = l.base();
            }
            write_arg(&mut cd.ram, gpa, &s)?;
            0
        }
        Request::GetSupportedCpuid(gpa) => {
            super::state::get_supported_cpuid(&mut cd.ram, gpa, ctx.cpuid)?
        }
        Request::GetMsrIndexList(gpa) => super::state::get_msr_index_list(&mut cd.ram, gpa)?,
        Request::SetCpuid2(gpa) => {
            let vm = ctx.objects.vm_here(vm_index)?;
            super::state::set_cpuid2(
                &cd.ram,
                gpa,
                &mut vm.env,
                ctx.cpuid,
                vm.split_irqchip.is_some(),
            )?
        }
        Request::GetMsrs(gpa) | Request::SetMsrs(gpa) => {
            let write = matches!(request, Request::SetMsrs(_));
            let vm = ctx.objects.vm_here(vm_index)?;
            let vc = vm
                .vcpus
                .get_mut(slot)
                .and_then(Option::as_mut)
                .ok_or(EBADF)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            super::state::msrs::<B>(&mut cd.ram, gpa, &mut vc.cpu, &mut vm.env, write)?
        }
        Request::GetFpu(gpa) => {
            let vm = ctx.objects.vm_here(vm_index)?;
            write_arg(&mut cd.ram, gpa, &super::state::get_fpu(&vm.env))?;
            0
        }
        Request::SetFpu(f) => {
            super::state::set_fpu(&mut ctx.objects.vm_here(vm_index)?.env, &f, ctx.xstate)?
        }
        Request::GetXsave(gpa) => {
            super::state::get_xsave(&mut cd.ram, gpa, &ctx.objects.vm_here(vm_index)?.env)?
        }
        Request::SetXsave(gpa) => super::state::set_xsave(
            &cd.ram,
            gpa,
            &mut ctx.objects.vm_here(vm_index)?.env,
            ctx.xstate,
        )?,
        Request::GetXcrs(gpa) => {
            let vm = ctx.objects.vm_here(vm_index)?;
            write_arg(&mut cd.ram, gpa, &super::state::get_xcrs(&vm.env))?;
            0
        }
        Request::SetXcrs(x) => {
            super::state::set_xcrs(&mut ctx.objects.vm_here(vm_index)?.env, &x, ctx.xstate)?
        }
        Request::EnableCapVm(c) => {
            // KVM_CAP_EXIT_HYPERCALL: the hypercalls (a bit per number) that
            // exit to the VMM; KVM accepts only KVM_HC_MAP_GPA_RANGE.
            const HYPERCALLS: u64 = 1 << abi::kvm::KVM_HC_MAP_GPA_RANGE;
            // KVM_CAP_X86_USER_SPACE_MSR: the failed MSR accesses that exit
            // to the VMM (unknown, invalid, denied by the MSR filter).
            const MSR_REASONS: u64 = (abi::kvm::KVM_MSR_EXIT_REASON_INVAL
                | abi::kvm::KVM_MSR_EXIT_REASON_UNKNOWN
                | abi::kvm::KVM_MSR_EXIT_REASON_FILTER) as u64;
            let vm = ctx.objects.vm_here(vm_index)?;
            let env = &mut vm.env;
            match c.cap {
                _ if c.flags != 0 => return Err(EINVAL),
                // KVM's order: too many pins, then -EEXIST once enabled or
                // once a vCPU exists.
                abi::kvm::KVM_CAP_SPLIT_IRQCHIP => {
                    if c.args[0] > super::lapic::MAX_RESERVED_PINS {
                        return Err(EINVAL);
                    }
                    if vm.split_irqchip.is_some() || vm.vcpus.iter().any(Option::is_some) {
                        return Err(EEXIST);
                    }
                    vm.split_irqchip = Some(c.args[0] as u32);
                }
                abi::kvm::KVM_CAP_EXIT_HYPERCALL if c.args[0] & !HYPERCALLS == 0 => {
                    env.hypercall_exits = c.args[0];
                }
                abi::kvm::KVM_CAP_X86_USER_SPACE_MSR if c.args[0] & !MSR_REASONS == 0 => {
                    env.user_msr_exits = c.args[0] as u32;
                }
                _ => return Err(EINVAL),
            }
            0
        }
        // No capability can be enabled on a vCPU yet.
        Request::EnableCapVcpu => return Err(EINVAL),
        Request::SetSregs(s) => {
            let vm = ctx.objects.vm_here(vm_index)?;
            let vc = vm
                .vcpus
                .get_mut(slot)
                .and_then(Option::as_mut)
                .ok_or(EBADF)?;
            if !ctx.backend.activate(&mut vc.cpu) {
                return Err(EINVAL);
            }
            // With the LAPIC here its base comes first (KVM: a base the
            // APIC refuses is -EINVAL before anything changes), and CR8 is
            // its TPR.
            if let Some(l) = vc.lapic.as_mut() {
                let mut probe = l.clone();
                probe.set_base(s.apic_base, true).map_err(|()| EINVAL)?;
            }
            super::kvm::set_sregs::<B>(&mut vc.cpu, &mut vm.env, &s)?;
            if let Some(l) = vc.lapic.as_mut() {
                let _ = l.set_base(s.apic_base, true);
                l.set_tpr(((s.cr8 & 0xf) << 4) as u8);
            }
            0
        }
    };
    Ok(Some(v))
}

/// KVM_X86_SET_MSR_FILTER's argument: the request, then each range's
/// bitmap from control-domain memory, checked in KVM's order (the flags,
/// then each range's flags and bitmap size, then the copy: `-EFAULT`).
fn read_msr_filter(
    ram: &GuestRam,
    arg: u64,
) -> Result<Option<crate::vcpu::msr_filter::MsrFilter>, i32> {
    use crate::vcpu::msr_filter::{self as f, Invalid};
    let req: abi::kvm::kvm_msr_filter = read_arg(ram, arg)?;
    if req.flags & !abi::kvm::KVM_MSR_FILTER_DEFAULT_DENY != 0 {
        return Err(EINVAL);
    }
    let mut ranges = alloc::vec::Vec::new();
    ranges
        .try_reserve_exact(f::MAX_RANGES)
        .map_err(|_| ENOMEM)?;
    for r in req.ranges.iter().filter(|r| r.nmsrs != 0) {
        let valid = abi::kvm::KVM_MSR_FILTER_READ | abi::kvm::KVM_MSR_FILTER_WRITE;
        if r.flags & !valid != 0 || r.flags == 0 {
            return Err(EINVAL);
        }
        let bytes = f::bitmap_bytes(r.nmsrs).map_err(|_| EINVAL)?;
        let mut bitmap = alloc::vec::Vec::new();
        bitmap.try_reserve_exact(bytes).map_err(|_| ENOMEM)?;
        bitmap.resize(bytes, 0);
        if !ram.read(GuestPhys::new(r.bitmap), &mut bitmap) {
            return Err(EFAULT);
        }
        ranges.push(f::Range {
            flags: r.flags,
            base: r.base,
            nmsrs: r.nmsrs,
            bitmap,
        });
    }
    f::MsrFilter::new(req.flags, ranges).map_err(|e| match e {
        Invalid::Flags | Invalid::RangeFlags | Invalid::BitmapSize | Invalid::EmptyDenyAll => {
            EINVAL
        }
        Invalid::NoMemory => ENOMEM,
    })
}

/// vCPU `slot` of VM `vm`, its state selected into the VM's `env`.
fn vcpu_of<B: Backend>(
    objects: &mut Objects<B>,
    vm: usize,
    slot: usize,
) -> Result<&mut KvmVcpu<B>, i32> {
    objects.vm_here(vm)?.select(slot).ok_or(EBADF)
}

/// KVM_CHECK_EXTENSION: truthful — what is implemented, nothing more.
fn check_extension(cap: u64) -> u64 {
    let Ok(cap) = u32::try_from(cap) else {
        return 0;
    };
    match cap {
        abi::kvm::KVM_CAP_USER_MEMORY
        | abi::kvm::KVM_CAP_IMMEDIATE_EXIT
        | abi::kvm::KVM_CAP_EXT_CPUID
        | abi::kvm::KVM_CAP_XSAVE
        | abi::kvm::KVM_CAP_XCRS
        | abi::kvm::KVM_CAP_ENABLE_CAP_VM
        | abi::kvm::KVM_CAP_READONLY_MEM
        | abi::kvm::KVM_CAP_SET_GUEST_DEBUG
        | abi::kvm::KVM_CAP_X86_USER_SPACE_MSR
        | abi::kvm::KVM_CAP_X86_MSR_FILTER
        | abi::kvm::KVM_CAP_SPLIT_IRQCHIP
        | abi::kvm::KVM_CAP_SIGNAL_MSI
        | abi::kvm::KVM_CAP_TSC_DEADLINE_TIMER
        | abi::kvm::KVM_CAP_MP_STATE
        | abi::kvm::KVM_CAP_VCPU_EVENTS
        // Port zones only: KVM_CAP_COALESCED_MMIO stays 0 (api.md §4.34).
        | abi::kvm::KVM_CAP_COALESCED_PIO => 1,
        abi::kvm::KVM_CAP_IRQ_ROUTING => u64::from(super::routing::MAX_ROUTES),
        // The bit mask of hypercalls that can exit (only KVM_HC_MAP_GPA_RANGE).
        abi::kvm::KVM_CAP_EXIT_HYPERCALL => 1 << abi::kvm::KVM_HC_MAP_GPA_RANGE,
        abi::kvm::KVM_CAP_NR_VCPUS | abi::kvm::KVM_CAP_MAX_VCPUS => u64::from(MAX_VCPUS),
        abi::kvm::KVM_CAP_MAX_VCPU_ID => u64::from(super::objects::MAX_VCPU_ID),
        abi::kvm::KVM_CAP_NR_MEMSLOTS => u64::from(MAX_MEMSLOTS),
        // The KVM_XEN_HVM_CONFIG flags offered: the hypercall-page MSR.
        abi::kvm::KVM_CAP_XEN_HVM => u64::from(abi::kvm::KVM_XEN_HVM_CONFIG_HYPERCALL_MSR),
        _ => 0,
    }
}

/// `MOJITO_CONSOLE_WRITE`: the text, copied out a chunk at a time, drawn
/// on the screen.
fn console_write(ram: &GuestRam, a: &mojito::mojito_console_write) -> Result<u64, i32> {
    if !crate::log::screen_present() {
        return Err(ENXIO);
    }
    let mut chunk = [0u8; 256];
    let mut done = 0u64;
    while done < u64::from(a.len) {
        let n = (u64::from(a.len) - done).min(chunk.len() as u64) as usize;
        if !ram.read(GuestPhys::new(a.buf + done), &mut chunk[..n]) {
            return Err(EFAULT);
        }
        crate::log::screen_write(&chunk[..n]);
        done += n as u64;
    }
    Ok(done)
}

/// MOJITO_READ_LOG: copies unread log bytes (or those from a position)
/// into the control domain's buffer, through a bounded bounce buffer.
fn read_log(
    state: &mut ControlState,
    ram: &mut GuestRam,
    gpa: u64,
    mut arg: mojito_log_read,
) -> Result<u64, i32> {
    if !ram.covers(GuestPhys::new(arg.buf), u64::from(arg.len)) {
        return Err(EFAULT);
    }
    let mut chunk = [0u8; 256];
    let mut copied = 0u32;
    let mut dropped = 0u64;
    let at = arg.flags & mojito::MOJITO_LOG_READ_AT != 0;
    let mut cursor = if at { arg.at } else { state.log_cursor };
    while copied < arg.len {
        let want = ((arg.len - copied) as usize).min(chunk.len());
        let (n, lost, next) = crate::log::read_since(cursor, &mut chunk[..want]);
        dropped += lost;
        cursor = next;
        if !at {
            state.log_cursor = next;
        }
        if n == 0 {
            break;
        }
        if !ram.write(GuestPhys::new(arg.buf + u64::from(copied)), &chunk[..n]) {
            return Err(EFAULT);
        }
        copied += n as u32;
    }
    arg.copied = copied;
    arg.dropped = dropped;
    arg.next = cursor;
    write_arg(ram, gpa, &arg)?;
    Ok(u64::from(copied))
}
