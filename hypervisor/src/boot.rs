//! Boot: from the bootloader's hand-over to running the guests in the boot
//! bundle, then power-off.

use core::fmt;

/// Mojito's version, for the first log line and `info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// RAM given to each test guest from the bundle.
pub const TEST_GUEST_RAM: u64 = 4 << 20;

/// A fatal error: logged with the `mojito: FATAL` prefix straight to the
/// UART; then this CPU stops (an emulator is told to exit with an error).
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    crate::log::emergency(format_args!("FATAL {args}"));
    stop_cpu()
}

/// Stops this CPU for good after a fatal error.
pub fn stop_cpu() -> ! {
    #[cfg(target_os = "none")]
    crate::arch::power::emulator_fail_exit();
    crate::arch::instr::halt_forever()
}

#[cfg(target_os = "none")]
pub use machine::start;

#[cfg(target_os = "none")]
mod machine {
    use super::*;
    use crate::arch::{gdt, idt, pic, power};
    use crate::log;
    use crate::mm::frame::FRAMES;
    use crate::vcpu::cpuid::{CpuidTable, Options};
    use crate::vcpu::lazy::HostXstate;
    use crate::virt::{Backend, svm::Svm, vmx::Vmx};
    use crate::vm::Vm;
    use alloc::string::String;
    use alloc::vec::Vec;
    use bootloader_api::BootInfo;
    use bootloader_api::info::MemoryRegionKind;
    use core::sync::atomic::{AtomicPtr, Ordering};

    /// The hypervisor's `main`: called once, on the boot CPU.
    pub fn start(boot_info: &'static mut BootInfo) -> ! {
        let serial = log::serial::init();
        if let Some(fb) = boot_info.framebuffer.as_mut() {
            log::fbcon::init(fb);
        }
        crate::arch::tsc::mark_boot();
        log!("Mojito {VERSION} starting");
        if !serial {
            log!("no UART at COM1: the log goes to the screen only");
        }
        let Some(offset) = boot_info.physical_memory_offset.into_option() else {
            fatal(format_args!("the bootloader did not map physical memory"));
        };
        crate::mm::phys::init(offset);
        crate::control::layout::note_image(boot_info.kernel_addr, boot_info.kernel_len);
        gdt::init();
        idt::init();
        pic::init_masked();

        let mut usable = 0u64;
        {
            let mut frames = FRAMES.lock();
            for r in boot_info.memory_regions.iter() {
                crate::control::layout::note_region_end(r.end);
                if r.kind == MemoryRegionKind::Usable {
                    usable += r.end - r.start;
                    // A few pages below 640 KiB for starting the other CPUs.
                    let start = crate::arch::smp::reserve_low(r.start, r.end);
                    if !frames.add_region(start, r.end) {
                        log!(
                            "memory: too many regions; ignoring {:#x}..{:#x}",
                            r.start,
                            r.end
                        );
                    }
                }
            }
        }
        if let Err(e) = crate::mm::heap::init() {
            fatal(format_args!("{e}"));
        }
        log!(
            "memory: {} MiB usable, {} MiB heap, {} MiB free for VMs",
            usable >> 20,
            crate::mm::heap::HEAP_SIZE >> 20,
            (FRAMES.lock().stats().free * 4096) >> 20
        );

        crate::control::info::note_memory(usable);
        match crate::arch::tsc::calibrate() {
            Some(khz) => log!(
                "tsc: {}.{:03} MHz, measured against the PIT",
                khz / 1000,
                khz % 1000
            ),
            None => log!("tsc: no PIT answered; the TSC's frequency is not known"),
        }
        match crate::arch::rtc::read_at_boot() {
            Some(t) => log!(
                "rtc: {}-{:02}-{:02} {:02}:{:02}:{:02} UTC, the wall clock for kvmclock and the VMM's RTC",
                t.year,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second
            ),
            None => log!("rtc: no CMOS clock answered; guests' wall clocks start at 1970"),
        }
        let xstate = HostXstate::init();
        let p = crate::arch::protect::enable();
        let on = |b: bool| if b { "on" } else { "not offered by the CPU" };
        log!("host: SMEP {}, SMAP {}", on(p.smep), on(p.smap));
        let h = crate::arch::protect::harden(boot_info.kernel_stack_bottom);
        if h.holds() {
            log!(
                "host: W^X holds: {} executable pages, all the hypervisor's code and read-only \
                 ({} the bootloader left made NX); none writable and executable, none \
                 user-accessible; guard pages under all {} stacks",
                h.executable,
                h.made_nx,
                h.stacks
            );
        } else {
            log!("host: W^X does NOT hold: {h:?}");
        }
        let m = crate::arch::spec::init();
        let yes = |b: bool| if b { "on" } else { "off" };
        log!(
            "host: speculation: RSB refilled after every exit; IBPB between VMs {}; VERW before entry {}{}; L1D flush between VMs {}",
            if m.ibpb {
                "on"
            } else {
                "off (the CPU offers none)"
            },
            yes(m.verw),
            if m.verw_without_md_clear {
                " (no MD_CLEAR microcode reported)"
            } else {
                ""
            },
            yes(m.l1d_flush)
        );
        if crate::arch::apic::start_timer() {
            match crate::arch::apic::measure_period() {
                Some(tsc) => match crate::arch::apic::timer_hz() {
                    0 => log!(
                        "timer: local APIC, periodic, vector {:#x}, a tick every {} TSC cycles \
                         (uncalibrated: the TSC's frequency is not known)",
                        crate::arch::apic::TIMER_VECTOR,
                        tsc
                    ),
                    hz => log!(
                        "timer: local APIC at {}.{:03} MHz (measured against the TSC), {}, \
                         vector {:#x}, a tick every {} TSC cycles ({} us asked)",
                        hz / 1_000_000,
                        hz / 1000 % 1000,
                        if crate::arch::apic::one_shot() {
                            "one-shot"
                        } else {
                            "periodic"
                        },
                        crate::arch::apic::TIMER_VECTOR,
                        tsc,
                        crate::arch::apic::TICK_US
                    ),
                },
                None => log!(
                    "timer: local APIC programmed, but no tick came; a guest that never exits keeps its CPU"
                ),
            }
        } else {
            log!("timer: no local APIC timer; a guest that never exits keeps its CPU");
        }
        if power::init(boot_info.rsdp_addr.into_option()).is_none() {
            log!("acpi: no S5 power-off found; the machine will halt instead");
        }

        let bundle = boot_info.ramdisk_addr.into_option().map(|addr| {
            let len = boot_info.ramdisk_len as usize;
            // SAFETY: the bootloader loaded the ramdisk at this address in our
            // address space and keeps it mapped; nothing writes it.
            unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
        });
        let guests = match bundle.map(abi::bundle::Bundle::parse) {
            Some(Ok(b)) => guest_files(b),
            Some(Err(e)) => {
                log!("boot bundle: {e}; no guests to start");
                Vec::new()
            }
            None => {
                log!("no boot bundle (ramdisk); no guests to start");
                Vec::new()
            }
        };

        // SDM Vol. 3C 24.6 / APM Vol. 2 15.4: the vendor decides which
        // extension to look for.
        let vendor = raw_cpuid::CpuId::new().get_vendor_info();
        let control = bundle
            .and_then(|b| abi::bundle::Bundle::parse(b).ok())
            .and_then(|b| b.get(CONTROL_ELF));
        let intel = vendor
            .as_ref()
            .is_some_and(|v| v.as_str() == "GenuineIntel");
        let config = bundle
            .and_then(|b| abi::bundle::Bundle::parse(b).ok())
            .and_then(|b| b.get(crate::config::FILE))
            .map(|f| {
                let text = core::str::from_utf8(f.data).unwrap_or("");
                crate::config::parse(text, |line, what| {
                    log!(
                        "{} line {line}: {what}; the line is skipped",
                        crate::config::FILE
                    )
                })
            })
            .unwrap_or_default();
        match (control, bundle) {
            (Some(cd), Some(bundle)) if intel => {
                run_control::<Vmx>(cd.data, bundle, config, &xstate)
            }
            (Some(cd), Some(bundle)) => run_control::<Svm>(cd.data, bundle, config, &xstate),
            _ if intel => run::<Vmx>(&guests, &xstate),
            _ => run::<Svm>(&guests, &xstate),
        }
        log!("all guests have stopped; powering off");
        power::power_off();
        log!("power-off did not work; halting");
        crate::arch::instr::halt_forever()
    }

    /// The control domain's image in the boot bundle.
    const CONTROL_ELF: &str = "control.elf";

    /// Turns on `B`, logs the CPU line and builds the default CPUID table.
    fn enable<B: Backend + 'static>(xstate: &HostXstate) -> (B, CpuidTable) {
        let backend = B::enable(&mut FRAMES.lock());
        let backend = match backend {
            Ok(b) => b,
            Err(e) => fatal(format_args!("cannot turn on {}: {e}", B::NAME)),
        };
        let mut line = String::new();
        let _ = backend.describe(&mut line);
        log!("cpu0: {line}");
        crate::control::info::note_extension(&line);
        crate::arch::smp::start_aps(ap_main::<B>, B::NAME);
        let opts = Options {
            xcr0_max: xstate.xcr0_max,
            rdtscp: B::NAME == "SVM" || vmx_rdtscp(),
        };
        (backend, CpuidTable::build(crate::arch::instr::cpuid, opts))
    }

    /// What the control domain's vCPUs share (`control::Shared<B>` for the
    /// `B` both `run_control` and `ap_main` are made for), once it runs.
    static SHARED: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

    // The pointer above hides the type from the compiler: what every CPU
    // reaches through it must be `Sync`.
    const _: () = {
        const fn shared_by_cpus<T: Sync>() {}
        shared_by_cpus::<crate::control::Shared<Vmx>>();
        shared_by_cpus::<crate::control::Shared<Svm>>();
    };

    /// An application processor's `main`: turns `B` on there and logs its
    /// line, starts its timer, then waits for the control domain to start
    /// its vCPU there (`MOJITO_START_CPU`) and runs it.
    fn ap_main<B: Backend + 'static>(cpu: usize) -> ! {
        // The pool's lock only for `enable`: `park` below never returns.
        let enabled = B::enable(&mut FRAMES.lock());
        let mut backend = match enabled {
            Ok(b) => {
                let mut line = String::new();
                let _ = b.describe(&mut line);
                log!("cpu{cpu}: {line}");
                b.structures(None, &mut |what, start, bytes| {
                    crate::control::layout::note_cpu(cpu, what, start, bytes);
                });
                crate::arch::smp::turned_on(true);
                b
            }
            Err(e) => {
                log!("cpu{cpu}: cannot turn on {}: {e}", B::NAME);
                crate::arch::smp::turned_on(false);
                crate::arch::smp::park()
            }
        };
        // Its own tick, from the boot CPU's measurement: it ends the RUNs of
        // guests here and wakes this CPU's waits. Without one a guest could
        // keep this CPU and the control domain's HLT here would stop its
        // vCPU: no vCPU here then.
        if !crate::arch::apic::start_timer_ap() {
            log!("cpu{cpu}: no local APIC timer; the control domain gets no vCPU here");
            crate::arch::smp::park()
        }
        loop {
            let start = crate::control::cpus::wait(cpu, crate::arch::smp::idle);
            let shared = SHARED.load(Ordering::Acquire);
            if shared.is_null() {
                crate::control::cpus::answer(cpu, Err(abi::kvm::errno::EIO));
                continue;
            }
            // SAFETY: `run_control::<B>` stored a leaked `Shared<B>` there
            // before the control domain (the only one who asks for a start)
            // ran; the machine chose one `B` for every CPU.
            let shared: &'static crate::control::Shared<B> =
                unsafe { &*shared.cast::<crate::control::Shared<B>>() };
            let made = crate::control::cpus::make_vcpu(
                &mut backend,
                &mut FRAMES.lock(),
                &shared.ap,
                &shared.xstate,
                cpu,
                start,
            );
            let (mut vcpu, mut env) = match made {
                Ok(m) => m,
                Err(e) => {
                    log!("cpu{cpu}: the control domain's vCPU {cpu} could not be made (-{e})");
                    crate::control::cpus::answer(cpu, Err(e));
                    continue;
                }
            };
            crate::control::cpus::answer(cpu, Ok(()));
            log!("cpu{cpu}: the control domain's vCPU {cpu} runs here");
            let reason = crate::control::run(&mut backend, &FRAMES, shared, &mut vcpu, &mut env);
            crate::control::cpus::stopped();
            if matches!(reason, crate::vm::StopReason::Exited(0)) {
                log!("cpu{cpu}: the control domain asked for power-off");
                power::power_off();
            }
            log!("cpu{cpu}: the control domain's vCPU {cpu} stopped: {reason}");
            crate::arch::smp::park()
        }
    }

    /// Starts the control domain and runs it until it powers off or stops.
    fn run_control<B: Backend + 'static>(
        elf: &'static [u8],
        bundle: &'static [u8],
        config: crate::config::Config,
        xstate: &HostXstate,
    ) {
        let (mut backend, table) = enable::<B>(xstate);
        let cd = crate::control::boot::create(
            &mut backend,
            &mut FRAMES.lock(),
            elf,
            bundle,
            config.control_ram,
            &table,
            xstate,
            crate::arch::smp::cpus_up(),
        );
        let mut cd = match cd {
            Ok(cd) => cd,
            Err(e) => fatal(format_args!("cannot create the control domain: {e}")),
        };
        log!(
            "control domain: {} MiB of RAM, {} MiB left to the hypervisor",
            cd.env.ram.size() >> 20,
            (FRAMES.lock().stats().free * 4096) >> 20
        );
        if let Some(asked) = config.control_ram
            && asked > cd.env.ram.size()
        {
            log!(
                "{}: control-ram asks for {} MiB; that is all there is to give",
                crate::config::FILE,
                asked >> 20
            );
        }
        // COM1 input (and a key) ends a guest's RUN and wakes the control
        // domain's HLT.
        crate::arch::com1_irq::enable();
        let reason = run_control_vcpu(&mut backend, &mut cd, table, xstate);
        let load =
            |n: &core::sync::atomic::AtomicU64| n.load(core::sync::atomic::Ordering::Relaxed);
        for cpu in 1..crate::arch::percpu::MAX_CPUS {
            if let Some(used) = crate::arch::smp::stack_used(cpu) {
                log!("cpu{cpu}: its stack went {} KiB deep", used.div_ceil(1024));
            }
        }
        log!(
            "control domain stopped: {reason} ({} timer ticks, {} COM1 interrupts, {} interrupts)",
            load(&crate::arch::apic::TICKS),
            load(&crate::arch::com1_irq::INTERRUPTS),
            load(&crate::arch::idt::INTERRUPTS)
        );
    }

    /// Runs the control domain's boot vCPU, with what its vCPUs on the
    /// other CPUs will share.
    fn run_control_vcpu<B: Backend + 'static>(
        backend: &mut B,
        cd: &mut Vm<B>,
        cpuid: CpuidTable,
        xstate: &HostXstate,
    ) -> crate::vm::StopReason {
        use crate::control::{ControlState, Locked, Shared, layout};
        let fail = |what| crate::vm::StopReason::Unhandled {
            what,
            detail: 0,
            rip: 0,
        };
        let Some(ap) = crate::control::boot::ap_template(cd) else {
            return fail("no memory for the control domain's shared state");
        };
        let state = ControlState {
            // What was logged so far already went to COM1.
            log_cursor: log::position(),
            layout: layout::Owner::of(
                &*backend,
                cd.vcpu(),
                cd.nested_root(),
                Some(cd.env.lazy.area()),
            ),
        };
        let shared: &'static Shared<B> = alloc::boxed::Box::leak(alloc::boxed::Box::new(Shared {
            locked: spin::Mutex::new(Locked {
                objects: Default::default(),
                state,
            }),
            cpuid,
            xstate: *xstate,
            ap,
        }));
        SHARED.store(
            core::ptr::from_ref(shared).cast_mut().cast::<()>(),
            Ordering::Release,
        );
        let Some((cpu, env)) = cd.parts() else {
            return fail("control domain without a vCPU");
        };
        // From here on the control domain owns COM1 and echoes the log ring.
        // Drain the UART first: the control domain re-programs it, which
        // resets its FIFO and would drop what is still queued.
        log::serial::flush();
        log::set_serial(false);
        let reason = crate::control::run(backend, &FRAMES, shared, cpu, env);
        log::set_serial(true);
        reason
    }

    /// The `guests/NAME.elf` files of the bundle, in bundle order.
    fn guest_files(b: abi::bundle::Bundle<'static>) -> Vec<(String, &'static [u8])> {
        b.files()
            .filter_map(|f| {
                let name = f.name.strip_prefix("guests/")?.strip_suffix(".elf")?;
                Some((String::from(name), f.data))
            })
            .collect()
    }

    fn run<B: Backend + 'static>(guests: &[(String, &'static [u8])], xstate: &HostXstate) {
        let (mut backend, table) = enable::<B>(xstate);
        let mut vms: Vec<Vm<B>> = Vec::new();
        for (name, elf) in guests {
            let id = vms.len() as u16 + 1;
            let vm = Vm::create(
                &mut backend,
                &mut FRAMES.lock(),
                id,
                name,
                elf,
                TEST_GUEST_RAM,
                &table,
                xstate,
            );
            match vm {
                Ok(vm) => {
                    log!(
                        "vm {id} ({name}): created with {} MiB of RAM",
                        TEST_GUEST_RAM >> 20
                    );
                    vms.push(vm);
                }
                Err(e) => log!("vm {id} ({name}): not created: {e}"),
            }
        }
        crate::sched::run_all(&mut backend, &FRAMES, &mut vms, xstate);
        for vm in &vms {
            let mut line = String::new();
            for (kind, n) in vm.env.stats.nonzero() {
                let _ = fmt::Write::write_fmt(&mut line, format_args!(" {kind}={n}"));
            }
            log!("vm {} ({}): exits:{line}", vm.env.id, vm.env.name);
        }
    }

    fn vmx_rdtscp() -> bool {
        // SAFETY: only called on Intel, where the capability MSR exists if
        // VMX is on (it is, by now).
        let cap = unsafe { crate::arch::instr::rdmsr(crate::arch::msr::IA32_VMX_PROCBASED_CTLS2) };
        (cap >> 32) & u64::from(crate::virt::vmx::vmcs::ctl::proc2::ENABLE_RDTSCP) != 0
    }
}
