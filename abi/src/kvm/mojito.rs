//! What is Mojito's own: the hypercall convention, the requests KVM has no
//! counterpart for, and the control domain's boot-info page.
//!
//! # The hypercall
//!
//! The control domain makes every request, KVM's and Mojito's, with one
//! instruction: `VMCALL` on Intel, `VMMCALL` on AMD
//! ([`mojito_boot_info::hypercall`] says which). It is the counterpart of
//! `ioctl(fd, request, arg)`:
//!
//! | register | on entry                                   | on return          |
//! |----------|--------------------------------------------|--------------------|
//! | RAX      | request code (a 32-bit `_IOC` value)       | result             |
//! | RDI      | handle (system, VM or vCPU)                | preserved          |
//! | RSI      | argument                                   | preserved          |
//!
//! - The argument is an integer when the request's `_IOC` direction is
//!   `IOC_NONE`, else the control-domain guest-physical address of a
//!   structure of the encoded size ([`super::ioctl::takes_pointer`]).
//! - The result is a value `>= 0` (what the ioctl would return: 0, a new
//!   handle, a count) or `-errno` as a 64-bit two's complement, in the range
//!   `-MAX_ERRNO..=-1` ([`decode_return`]).
//! - Every other register is preserved, and RIP moves past the instruction.
//! - Bits 63:32 of RAX must be zero; a request code that is not known gets
//!   KVM's answer for an unknown ioctl (`-ENOTTY` on a VM handle, `-EINVAL`
//!   on system and vCPU handles).
//!
//! RAX selects the function as it does in KVM's own guest hypercall ABI and
//! in Linux system calls, and RDI/RSI are the first two argument registers
//! of the System V ABI. Request codes all have a type byte in bits 15:8, so
//! they never equal a `KVM_HC_*` number: an ordinary guest that issues one
//! gets `-KVM_ENOSYS` like any unknown hypercall (DESIGN.md D1).
//!
//! # Mojito's requests
//!
//! They use the type byte [`MOJITO_IOCTL_TYPE`], never KVM's `0xAE`, so a
//! future KVM request can never collide with one, and every structure has a
//! `flags` field (unknown bits: `-EINVAL`) and zeroed padding to grow into.

use core::mem::size_of;

use super::ioctl::{io, iow, iowr};

/// The ioctl type byte of Mojito's own requests.
///
/// 0xB8 is unassigned in Linux's `Documentation/userspace-api/ioctl/
/// ioctl-number.rst` (checked against a 2025 tree: 0xB6 is `fpga-dfl.h`,
/// 0xB7 `nsfs.h`/`remoteproc_cdev.h`, 0xC0 the next in use), so a Linux
/// control domain that passes KVM requests through to `/dev/kvm` could
/// still tell Mojito's apart by this byte alone.
pub const MOJITO_IOCTL_TYPE: u8 = 0xB8;

/// The system handle, the counterpart of an open `/dev/kvm`: always valid in
/// the control domain, and never closed.
pub const MOJITO_SYSTEM_HANDLE: u64 = 0;

/// Largest errno a result can carry (as Linux's `MAX_ERRNO`): RAX values from
/// `-MAX_ERRNO` to `-1` are errors, everything else is a value.
pub const MAX_ERRNO: u64 = 4095;

/// The RAX that reports `errno` (a positive `errno::E*`): `-errno`.
pub const fn error_return(errno: i32) -> u64 {
    (errno as i64).wrapping_neg() as u64
}

/// Splits a hypercall's RAX into a value or a positive errno.
pub const fn decode_return(rax: u64) -> Result<u64, i32> {
    if rax > u64::MAX - MAX_ERRNO {
        Err((rax as i64).wrapping_neg() as i32)
    } else {
        Ok(rax)
    }
}

/// [`mojito_boot_info::hypercall`]: use `VMCALL` (0F 01 C1), Intel VMX.
pub const MOJITO_HYPERCALL_VMCALL: u32 = 1;
/// [`mojito_boot_info::hypercall`]: use `VMMCALL` (0F 01 D9), AMD SVM.
pub const MOJITO_HYPERCALL_VMMCALL: u32 = 2;

/// Any handle but the system one: Closes the handle in RDI, like
/// `close(2)`. Integer argument: 0. Closing a VM closes its vCPUs and gives
/// back its memory slots and hypervisor metadata; closing a vCPU that is
/// inside `KVM_RUN` fails with `-EBUSY`. Returns 0, or `-EBADF`.
pub const MOJITO_CLOSE: u32 = io(MOJITO_IOCTL_TYPE, 0x00);

/// vCPU: Gives the vCPU its run pages, the counterpart of `mmap` on a vCPU
/// fd: [`mojito_run_pages`]. Returns 0.
pub const MOJITO_SET_RUN_PAGES: u32 = iow(MOJITO_IOCTL_TYPE, 0x01, size_of::<mojito_run_pages>());

/// System: Reads the hypervisor's log ring: [`mojito_log_read`]. Returns
/// the number of bytes copied (also in `copied`).
pub const MOJITO_READ_LOG: u32 = iowr(MOJITO_IOCTL_TYPE, 0x02, size_of::<mojito_log_read>());

/// System: Powers the machine off (ACPI S5), after the control domain has
/// stopped its VMs. Integer argument: 0. Does not return on success; returns
/// `-EIO` if the machine has no working power-off.
pub const MOJITO_POWER_OFF: u32 = io(MOJITO_IOCTL_TYPE, 0x03);

/// System: Reads, and with [`MOJITO_POOL_SET_LIMIT`] limits, the
/// hypervisor's pool of frames for VM metadata (nested page tables,
/// VMCS/VMCB, bitmaps): [`mojito_metadata_pool`]. Returns 0. A limit lets
/// the control domain keep memory for itself, and test how requests behave
/// when the pool runs out (`-ENOMEM`, nothing half-made).
pub const MOJITO_METADATA_POOL: u32 =
    iowr(MOJITO_IOCTL_TYPE, 0x04, size_of::<mojito_metadata_pool>());

/// [`mojito_metadata_pool::flags`]: set the limit from `limit`.
pub const MOJITO_POOL_SET_LIMIT: u32 = 1;

/// System: Describes the machine and the hypervisor for the operator's
/// `info`: [`mojito_info`]. Returns 0.
pub const MOJITO_INFO: u32 = iowr(MOJITO_IOCTL_TYPE, 0x05, size_of::<mojito_info>());

/// System: Resets the machine (the FADT's reset register, then port 0xCF9,
/// then the keyboard controller, then a triple fault), after the control
/// domain has stopped its VMs. Integer argument: 0. Does not return.
pub const MOJITO_REBOOT: u32 = io(MOJITO_IOCTL_TYPE, 0x06);

/// System: Draws text on the machine's screen (the framebuffer console the
/// hypervisor's log used until the control domain started), for a shell
/// mirrored there: [`mojito_console_write`]. CR, LF, BS, `ESC [ K` and
/// `ESC [ n C/D` are understood. Returns the bytes taken; `-ENXIO` without
/// a screen.
pub const MOJITO_CONSOLE_WRITE: u32 =
    iow(MOJITO_IOCTL_TYPE, 0x07, size_of::<mojito_console_write>());

/// System: Writes to the hypervisor's log (never to the caller) where the
/// hypervisor keeps its image, heap and per-CPU structures, and for the
/// control domain and every VM the root of its nested page tables and the
/// memory its vCPU's hardware structures and extended state occupy, one
/// `layout: …` line per owner (host-physical addresses), for tests that
/// check a dump of the machine's memory. Integer argument: 0. Returns the
/// number of lines.
pub const MOJITO_LOG_LAYOUT: u32 = io(MOJITO_IOCTL_TYPE, 0x08);

/// System: Starts the control domain's vCPU number `cpu` (1 up to
/// `mojito_boot_info::nr_vcpus` − 1) on the physical CPU of that number:
/// [`mojito_start_cpu`]. It begins in the boot vCPU's entry state (64-bit
/// mode, the same page tables and GDT, interrupts off) with RIP, RSP and
/// RDI as given and every other general register 0; a guest vCPU it runs
/// runs on its CPU (D2). Returns 0; `-EINVAL` for flags or padding not 0
/// or a non-canonical RIP or RSP, `-ENXIO` for a CPU that is not there
/// (0 is the caller's own), `-EEXIST` if it was started already, `-ENOMEM`.
pub const MOJITO_START_CPU: u32 = iow(MOJITO_IOCTL_TYPE, 0x09, size_of::<mojito_start_cpu>());

/// System: Ends the `KVM_RUN` on the control domain's vCPU `cpu` (integer
/// argument) with `-EINTR` and `KVM_EXIT_INTR`, or its next one if it is
/// not inside one, as a signal ends Linux's: an IPI makes a guest running
/// there exit and wakes that vCPU's HLT (D2). Any vCPU may kick any, itself
/// too. Returns 0; `-ENXIO` unless that vCPU runs (0 always does).
pub const MOJITO_KICK_CPU: u32 = io(MOJITO_IOCTL_TYPE, 0x0a);

/// VM: The VM's coalesced-write ring (`KVM_REGISTER_COALESCED_MMIO`):
/// the counterpart of mapping a vCPU fd at `KVM_COALESCED_MMIO_PAGE_OFFSET`
/// in KVM, where the kernel owns the page; here the control domain gives
/// one page of its RAM, shared by all the VM's vCPUs. Until a ring is set
/// (and whenever it is full) writes to registered zones exit as usual.
/// Returns 0; `-EINVAL` for flags or padding not 0, or a `gpa` that is not
/// page-aligned control-domain RAM; `gpa` 0 takes the ring away.
pub const MOJITO_SET_COALESCED_RING: u32 =
    iow(MOJITO_IOCTL_TYPE, 0x0b, size_of::<mojito_coalesced_ring>());

/// The `MOJITO_SET_COALESCED_RING` argument.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct mojito_coalesced_ring {
    /// None defined: must be 0.
    pub flags: u32,
    /// Must be 0.
    pub pad: u32,
    /// The page (a `kvm_coalesced_mmio_ring` and its entries), or 0.
    pub gpa: u64,
    /// Must be 0.
    pub padding: [u64; 2],
}

assert_layout!(struct mojito_coalesced_ring, size 32, align 8, {
    flags: 0, pad: 4, gpa: 8, padding: 16,
});

/// The `MOJITO_START_CPU` argument.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct mojito_start_cpu {
    /// The vCPU (and physical CPU) to start: 1 up.
    pub cpu: u32,
    /// None defined: must be 0.
    pub flags: u32,
    pub rip: u64,
    pub rsp: u64,
    /// Its first argument (System V: RDI).
    pub rdi: u64,
    /// Must be 0.
    pub padding: [u64; 4],
}

assert_layout!(struct mojito_start_cpu, size 64, align 8, {
    cpu: 0, flags: 4, rip: 8, rsp: 16, rdi: 24, padding: 32,
});

/// Most bytes one `MOJITO_CONSOLE_WRITE` takes.
pub const MOJITO_CONSOLE_WRITE_MAX: u32 = 4096;

/// The `MOJITO_CONSOLE_WRITE` argument.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct mojito_console_write {
    /// None defined: must be 0.
    pub flags: u32,
    /// Bytes at `buf`, at most [`MOJITO_CONSOLE_WRITE_MAX`].
    pub len: u32,
    /// The text (control-domain guest-physical address), UTF-8.
    pub buf: u64,
    /// Must be 0.
    pub padding: [u64; 2],
}

assert_layout!(struct mojito_console_write, size 32, align 8, {
    flags: 0, len: 4, buf: 8, padding: 16,
});

/// [`mojito_info::platform`]: the FADT says there is an 8042 keyboard
/// controller (ports 0x60 and 0x64, which the control domain is given).
pub const MOJITO_PLATFORM_8042: u64 = 1 << 0;
/// [`mojito_info::platform`]: the FADT says there is **no** 8042 (neither
/// bit: no FADT or an ACPI 1.0 one, which cannot say).
pub const MOJITO_PLATFORM_NO_8042: u64 = 1 << 1;
/// [`mojito_info::platform`]: there is a screen for `MOJITO_CONSOLE_WRITE`.
pub const MOJITO_PLATFORM_SCREEN: u64 = 1 << 2;

/// The `MOJITO_INFO` argument. Sizes are bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mojito_info {
    /// In: none defined, must be 0.
    pub flags: u32,
    /// Out: physical CPUs the hypervisor runs on.
    pub cpus: u32,
    /// Out: the TSC's frequency in kHz, measured against the PIT at boot
    /// (0: not measured).
    pub tsc_khz: u64,
    /// Out: TSC cycles since the hypervisor started.
    pub uptime_tsc: u64,
    /// Out: RAM the firmware reported usable.
    pub mem_usable: u64,
    /// Out: RAM the hypervisor keeps (its heap, VM metadata, and the frames
    /// it holds): usable less the control domain's and the free.
    pub mem_hypervisor: u64,
    /// Out: the control domain's RAM.
    pub mem_control: u64,
    /// Out: free frames of the hypervisor's pool for VM metadata.
    pub mem_free: u64,
    /// Out: ticks of the hypervisor's timer.
    pub timer_ticks: u64,
    /// Out: `MOJITO_PLATFORM_*` bits.
    pub platform: u64,
    /// Out: the wall clock the hypervisor read from the machine's CMOS RTC
    /// at boot, in seconds since the Unix epoch (0: no RTC answered), and
    /// the TSC when it read it (up to a second into that second).
    /// kvmclock's wall clock and the VMM's RTC both start from it.
    pub rtc_unix_s: u64,
    pub rtc_tsc: u64,
    /// Must be 0.
    pub padding: [u64; 5],
    /// Out: the virtualization extension and the features in use, as the
    /// boot log says them (`SVM: NPT, 16 ASIDs, ...`), NUL-terminated.
    pub extension: [u8; 128],
}

impl Default for mojito_info {
    fn default() -> Self {
        Self {
            flags: 0,
            cpus: 0,
            tsc_khz: 0,
            uptime_tsc: 0,
            mem_usable: 0,
            mem_hypervisor: 0,
            mem_control: 0,
            mem_free: 0,
            timer_ticks: 0,
            platform: 0,
            rtc_unix_s: 0,
            rtc_tsc: 0,
            padding: [0; 5],
            extension: [0; 128],
        }
    }
}

assert_layout!(struct mojito_info, size 256, align 8, {
    flags: 0, cpus: 4, tsc_khz: 8, uptime_tsc: 16, mem_usable: 24, mem_hypervisor: 32,
    mem_control: 40, mem_free: 48, timer_ticks: 56, platform: 64, rtc_unix_s: 72, rtc_tsc: 80, padding: 88, extension: 128,
});

/// The `MOJITO_SET_RUN_PAGES` argument.
///
/// `gpa` is the page-aligned control-domain guest-physical address of
/// `count` contiguous 4 KiB pages of control-domain RAM; `count` must be
/// `KVM_GET_VCPU_MMAP_SIZE / 4096`. Page 0 holds `kvm_run`, page
/// `KVM_PIO_PAGE_OFFSET` the port-I/O data. A vCPU needs its pages before
/// its first `KVM_RUN`; setting them again replaces them.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct mojito_run_pages {
    /// None defined: must be 0.
    pub flags: u32,
    pub count: u32,
    pub gpa: u64,
    /// Must be 0.
    pub padding: [u64; 6],
}

assert_layout!(struct mojito_run_pages, size 64, align 8, {
    flags: 0, count: 4, gpa: 8, padding: 16,
});

/// The `MOJITO_READ_LOG` argument.
///
/// Copies the oldest unread bytes of the log ring (UTF-8 text, lines ending
/// in `\n`), at most `len`, to the control-domain guest-physical address
/// `buf`, and never blocks. The bytes lost to ring overflow since the
/// previous read are reported in `dropped`.
///
/// With [`MOJITO_LOG_READ_AT`] in `flags` it reads from position `at`
/// instead (0: the oldest byte the ring still holds) and leaves the unread
/// mark alone: the operator's `log` reads the whole ring so. `next` is the
/// position after the last byte copied, either way.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct mojito_log_read {
    /// In: none defined, must be 0.
    pub flags: u32,
    /// In: the buffer's size in bytes.
    pub len: u32,
    /// In: the buffer (control-domain guest-physical address).
    pub buf: u64,
    /// Out: bytes copied to `buf`.
    pub copied: u32,
    pub pad: u32,
    /// Out: bytes lost since the previous read (or before `at`).
    pub dropped: u64,
    /// In, with [`MOJITO_LOG_READ_AT`]: where to read from; else 0.
    pub at: u64,
    /// Out: the position after the last byte copied.
    pub next: u64,
    /// Must be 0.
    pub padding: [u64; 2],
}

/// [`mojito_log_read::flags`]: read from `at`, not from the unread mark.
pub const MOJITO_LOG_READ_AT: u32 = 1;

assert_layout!(struct mojito_log_read, size 64, align 8, {
    flags: 0, len: 4, buf: 8, copied: 16, pad: 20, dropped: 24, at: 32, next: 40, padding: 48,
});

/// The `MOJITO_METADATA_POOL` argument. Counts are 4 KiB frames.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct mojito_metadata_pool {
    /// In: 0 (only read) or [`MOJITO_POOL_SET_LIMIT`].
    pub flags: u32,
    /// Must be 0.
    pub pad: u32,
    /// In, with [`MOJITO_POOL_SET_LIMIT`]: how many of the free frames may
    /// still be taken from now on; `u64::MAX` lifts the limit. Frames given
    /// back later can be taken again.
    pub limit: u64,
    /// Out: frames in the pool.
    pub total: u64,
    /// Out: free frames.
    pub free: u64,
    /// Out: free frames that may be taken (`free` less those the limit
    /// holds back).
    pub available: u64,
    /// Must be 0.
    pub padding: [u64; 3],
}

assert_layout!(struct mojito_metadata_pool, size 64, align 8, {
    flags: 0, pad: 4, limit: 8, total: 16, free: 24, available: 32, padding: 40,
});

/// [`mojito_boot_info::magic`]: the bytes `MojitoBI`.
pub const MOJITO_BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"MojitoBI");
/// [`mojito_boot_info::version`] of the layout described here.
pub const MOJITO_BOOT_INFO_VERSION: u32 = 1;
/// Size of the boot-info page.
pub const MOJITO_BOOT_INFO_SIZE: usize = 4096;
/// Capacity of [`mojito_boot_info::memory`].
pub const MOJITO_BOOT_INFO_MAX_MEMORY: usize = 160;

/// [`mojito_memory_region::type_`]: RAM the control domain owns.
pub const MOJITO_MEMORY_RAM: u32 = 1;
/// [`mojito_memory_region::type_`]: not to be used.
pub const MOJITO_MEMORY_RESERVED: u32 = 2;
/// [`mojito_memory_region::type_`]: RAM holding the boot bundle; ordinary
/// RAM once the control domain is done with the bundle.
pub const MOJITO_MEMORY_BUNDLE: u32 = 3;
/// [`mojito_memory_region::type_`]: RAM holding what the hypervisor built for
/// the entry (this page, the initial page tables, GDT and stack); ordinary
/// RAM once the control domain runs on its own.
pub const MOJITO_MEMORY_BOOT: u32 = 4;

/// One range of the control domain's guest-physical memory map.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct mojito_memory_region {
    pub base: u64,
    /// In bytes.
    pub len: u64,
    /// `MOJITO_MEMORY_*` (`type` is a Rust keyword).
    pub type_: u32,
    /// None defined: 0.
    pub flags: u32,
}

assert_layout!(struct mojito_memory_region, size 24, align 8, {
    base: 0, len: 8, type_: 16, flags: 20,
});

/// The control domain's boot-info page, one 4 KiB page.
///
/// The hypervisor enters the control domain's first vCPU in 64-bit mode
/// with RDI holding this page's guest-physical address (the first argument
/// register, so an `extern "sysv64" fn(u64)` entry point receives it).
///
/// Versioning: `version` changes only when a field changes meaning or place.
/// A field added later takes bytes from `padding` (zero until then) and is
/// announced by a bit in `flags`, so a reader of an older version still
/// reads the page correctly; readers check `magic`, `version` and `size`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mojito_boot_info {
    /// [`MOJITO_BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// [`MOJITO_BOOT_INFO_VERSION`].
    pub version: u32,
    /// None defined yet: 0.
    pub flags: u32,
    /// [`MOJITO_BOOT_INFO_SIZE`].
    pub size: u32,
    /// Which instruction makes a hypercall: `MOJITO_HYPERCALL_*`.
    pub hypercall: u32,
    /// How many vCPUs the control domain has (APIC ids 0..nr_vcpus).
    pub nr_vcpus: u32,
    /// Entries used in `memory`.
    pub nr_memory: u32,
    /// Guest-physical address of the boot bundle (a cpio newc archive).
    pub bundle_gpa: u64,
    /// Its length in bytes.
    pub bundle_len: u64,
    pub padding: [u64; 26],
    /// The control domain's memory map, sorted by `base`, ranges disjoint.
    pub memory: [mojito_memory_region; MOJITO_BOOT_INFO_MAX_MEMORY],
}

impl Default for mojito_boot_info {
    fn default() -> Self {
        Self {
            magic: MOJITO_BOOT_INFO_MAGIC,
            version: MOJITO_BOOT_INFO_VERSION,
            flags: 0,
            size: MOJITO_BOOT_INFO_SIZE as u32,
            hypercall: 0,
            nr_vcpus: 0,
            nr_memory: 0,
            bundle_gpa: 0,
            bundle_len: 0,
            padding: [0; 26],
            memory: [mojito_memory_region {
                base: 0,
                len: 0,
                type_: 0,
                flags: 0,
            }; MOJITO_BOOT_INFO_MAX_MEMORY],
        }
    }
}

assert_layout!(struct mojito_boot_info, size MOJITO_BOOT_INFO_SIZE, align 8, {
    magic: 0, version: 8, flags: 12, size: 16, hypercall: 20, nr_vcpus: 24,
    nr_memory: 28, bundle_gpa: 32, bundle_len: 40, padding: 48, memory: 256,
});
