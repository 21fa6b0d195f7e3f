//! `MOJITO_INFO`: what the operator's `info` shows about the machine and
//! the hypervisor. Boot notes the facts that do not change; the request
//! adds the ones that do (memory, uptime).

use abi::kvm::mojito::mojito_info;

static USABLE: spin::Once<u64> = spin::Once::new();
static EXTENSION: spin::Once<[u8; 128]> = spin::Once::new();

/// Notes the RAM the firmware reported usable.
pub fn note_memory(usable: u64) {
    USABLE.call_once(|| usable);
}

/// Notes the extension's description (the boot log's `cpu0:` line), cut to
/// what fits with its NUL.
pub fn note_extension(line: &str) {
    EXTENSION.call_once(|| {
        let mut text = [0u8; 128];
        let n = line.len().min(text.len() - 1);
        text[..n].copy_from_slice(&line.as_bytes()[..n]);
        text
    });
}

/// Physical CPUs with VMX/SVM on (`arch::smp`).
static CPUS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

/// Notes how many CPUs turned the extension on.
pub fn note_cpus(n: u32) {
    CPUS.store(n, core::sync::atomic::Ordering::Relaxed);
}

/// Fills `info`'s output fields. `control` is the control domain's RAM,
/// `free` the free bytes of the metadata pool.
pub fn fill(info: &mut mojito_info, control: u64, free: u64) {
    info.cpus = CPUS.load(core::sync::atomic::Ordering::Relaxed);
    info.tsc_khz = crate::arch::tsc::frequency_khz();
    (info.rtc_unix_s, info.rtc_tsc) = crate::arch::rtc::boot_time().unwrap_or((0, 0));
    info.uptime_tsc = crate::arch::tsc::uptime_cycles();
    info.timer_ticks = crate::arch::apic::TICKS.load(core::sync::atomic::Ordering::Relaxed);
    info.mem_usable = USABLE.get().copied().unwrap_or(0);
    info.mem_control = control;
    info.mem_free = free;
    info.mem_hypervisor = info.mem_usable.saturating_sub(control).saturating_sub(free);
    info.extension = EXTENSION.get().copied().unwrap_or([0; 128]);
    #[cfg(target_os = "none")]
    {
        use abi::kvm::mojito::{
            MOJITO_PLATFORM_8042, MOJITO_PLATFORM_NO_8042, MOJITO_PLATFORM_SCREEN,
        };
        info.platform = match crate::arch::power::has_8042() {
            Some(true) => MOJITO_PLATFORM_8042,
            Some(false) => MOJITO_PLATFORM_NO_8042,
            None => 0,
        };
        if crate::log::screen_present() {
            info.platform |= MOJITO_PLATFORM_SCREEN;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_memory_and_the_extension() {
        note_memory(1000 << 20);
        note_extension("SVM: NPT, 16 ASIDs");
        // Noted once: a second note changes nothing.
        note_memory(1);
        note_extension("VMX");
        let mut info = mojito_info::default();
        fill(&mut info, 700 << 20, 250 << 20);
        assert_eq!(info.cpus, 1);
        assert_eq!(info.mem_usable, 1000 << 20);
        assert_eq!(info.mem_hypervisor, 50 << 20);
        assert_eq!(&info.extension[..19], b"SVM: NPT, 16 ASIDs\0");
    }
}
