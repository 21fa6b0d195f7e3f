//! A guest vCPU's local APIC as a pure register model: the in-hypervisor
//! half of KVM's split irqchip (the I/O APIC and PIC live in the VMM).
//!
//! The registers are a copy of the first KiB of the APIC page (one 32-bit
//! word per 16-byte slot, SDM Vol. 3A Table 11-1), which is also the
//! `KVM_GET_LAPIC` layout. Reads and writes follow the SDM chapter 11
//! ("Advanced Programmable Interrupt Controller") as Linux KVM's lapic.c
//! implements it, since a guest must see the values it sees under KVM:
//! the same write masks, the same readable registers, the same x2APIC #GP
//! cases, the same timer arithmetic (a 1 GHz APIC bus, periodic timers of
//! at least 200 us).
//!
//! Time is the guest's TSC. The timer is a deadline the caller polls:
//! after anything that returns `Effect::TimerChanged` it re-reads
//! `timer_deadline()`, and once the guest TSC reaches it calls
//! `update_timer`. Interrupt delivery between APICs is the caller's: an ICR
//! write only decodes the IPI (`Effect::Ipi`), and the caller hands the
//! fixed interrupts to each addressed APIC's `deliver` (`matches` says
//! which are addressed).
//!
//! Every input (offset, value, MSR, time, a `KVM_SET_LAPIC` image) comes
//! from the guest or its VMM: nothing here indexes out of bounds,
//! overflows or divides by zero.

// `Err(())` is the one way these accesses fail: #GP (or KVM's -EINVAL for
// `set_state`); a type of its own would carry nothing more.
#![allow(clippy::result_unit_err)]

/// The default `IA32_APIC_BASE` address (SDM Vol. 3A 11.4.4).
pub const XAPIC_BASE: u64 = 0xfee0_0000;
pub const IA32_APIC_BASE: u32 = 0x1b;
/// SDM Vol. 3A 11.5.4.1 TSC-Deadline Mode.
pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
/// The x2APIC MSR range (SDM Vol. 3A 11.12.1.2).
pub const X2APIC_MSR_FIRST: u32 = 0x800;
pub const X2APIC_MSR_LAST: u32 = 0x8ff;
/// `IA32_APIC_BASE` flags (SDM Vol. 3A 11.4.4, 11.12.1).
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_X2APIC: u64 = 1 << 10;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// Bits 0-7 and 9, and those above MAXPHYADDR (taken as 52): #GP.
const APIC_BASE_RESERVED: u64 = 0x2ff | !((1 << 52) - 1);

// Register offsets in the APIC page (SDM Vol. 3A Table 11-1; x2APIC MSR =
// 0x800 + offset / 16, Table 11-6).
const ID: u32 = 0x20;
const VERSION: u32 = 0x30;
const TPR: u32 = 0x80;
const APR: u32 = 0x90;
const PPR: u32 = 0xa0;
const EOI: u32 = 0xb0;
const LDR: u32 = 0xd0;
const DFR: u32 = 0xe0;
const SVR: u32 = 0xf0;
const ISR: u32 = 0x100;
const TMR: u32 = 0x180;
const IRR: u32 = 0x200;
const ESR: u32 = 0x280;
const ICR_LOW: u32 = 0x300;
const ICR_HIGH: u32 = 0x310;
const LVT_TIMER: u32 = 0x320;
const LVT_THERMAL: u32 = 0x330;
const LVT_PERF: u32 = 0x340;
const LVT_LINT0: u32 = 0x350;
const LVT_LINT1: u32 = 0x360;
const LVT_ERROR: u32 = 0x370;
const TMICT: u32 = 0x380;
const TMCCT: u32 = 0x390;
const TDCR: u32 = 0x3e0;
const SELF_IPI: u32 = 0x3f0;
/// The six LVT entries KVM offers without CMCI (`LVT_CMCI`, 0x2f0, is
/// absent: reads 0, #GP in x2APIC).
const LVTS: [u32; 6] = [
    LVT_TIMER,
    LVT_THERMAL,
    LVT_PERF,
    LVT_LINT0,
    LVT_LINT1,
    LVT_ERROR,
];
/// Registers in the model: one per 16-byte slot of the first KiB.
const REGS: usize = 64;

/// Version 0x14 (an integrated APIC), max LVT entry 5 (SDM Vol. 3A 11.4.8);
/// no directed-EOI bit 24.
const VERSION_VALUE: u32 = 0x0005_0014;
/// SVR: vector, APIC software enable (bit 8), focus-check disable (bit 9)
/// (SDM Vol. 3A 11.9 Spurious Interrupt).
const SVR_WRITABLE: u32 = 0x3ff;
const SVR_ENABLE: u32 = 1 << 8;
const SVR_RESET: u32 = 0xff;
/// LDR bits 31:24 and DFR bits 31:28 (SDM Vol. 3A 11.6.2.2; the rest of
/// the DFR reads 1).
const LDR_WRITABLE: u32 = 0xff00_0000;
const DFR_ONES: u32 = 0x0fff_ffff;
const DFR_FLAT: u32 = 0xffff_ffff;
const DFR_CLUSTER: u32 = 0x0fff_ffff;
/// ESR bit 6, Received Illegal Vector (SDM Vol. 3A 11.5.3).
const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;

// LVT fields (SDM Vol. 3A 11.5.1 Figure 11-8).
const LVT_VECTOR: u32 = 0xff;
const LVT_DELIVERY_MODE: u32 = 0x700;
const LVT_DELIVERY_STATUS: u32 = 1 << 12;
const LVT_POLARITY: u32 = 1 << 13;
const LVT_REMOTE_IRR: u32 = 1 << 14;
const LVT_LEVEL: u32 = 1 << 15;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_MODE: u32 = 3 << 17;
/// What each LVT keeps of a write (KVM's `apic_lvt_mask`; the delivery
/// status bit is kept, as KVM does).
const LVT_COMMON: u32 = LVT_MASKED | LVT_DELIVERY_STATUS | LVT_VECTOR;
const LVT_TIMER_WRITABLE: u32 = LVT_COMMON | LVT_TIMER_MODE;
const LVT_MODE_WRITABLE: u32 = LVT_COMMON | LVT_DELIVERY_MODE;
const LVT_LINT_WRITABLE: u32 = LVT_MODE_WRITABLE | LVT_POLARITY | LVT_REMOTE_IRR | LVT_LEVEL;
/// KVM's `KVM_X86_QUIRK_LINT0_REENABLED` (on unless a VMM disables it):
/// the BSP's LINT0 comes out of reset unmasked in ExtINT mode.
const LVT_LINT0_BSP_RESET: u32 = 7 << 8;

// ICR fields (SDM Vol. 3A 11.6.1 Figure 11-12).
const ICR_VECTOR: u32 = 0xff;
const ICR_LOGICAL: u32 = 1 << 11;
const ICR_BUSY: u32 = 1 << 12;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_LEVEL: u32 = 1 << 15;
/// xAPIC IDs and destinations sit in bits 31:24 of the ID, LDR and
/// ICR_HIGH registers (SDM Vol. 3A 11.4.6, 11.6.1).
const XAPIC_ID_SHIFT: u32 = 24;
/// x2APIC ICR bits whose setting is #GP (SDM Vol. 3A 11.12.9; KVM's
/// `X2APIC_ICR_RESERVED_BITS`).
const X2APIC_ICR_RESERVED: u64 = 0xfff0_0000 | (3 << 16) | (1 << 13);

/// The APIC bus runs at 1 GHz, as KVM's default `APIC_BUS_CYCLE_NS` of 1:
/// a timer count is one ns before the divide (SDM Vol. 3A 11.5.4).
const KHZ_PER_GHZ: u128 = 1_000_000;
/// KVM's `min_timer_period_us`: periodic timers fire at most every 200 us.
const MIN_PERIOD_NS: u64 = 200_000;
/// The guest TSC frequency assumed when none is given.
const DEFAULT_TSC_KHZ: u64 = 1_000_000;

/// The APIC's mode (SDM Vol. 3A 11.12.1 Table 11-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Disabled,
    XApic,
    X2Apic,
}

/// Delivery mode of an ICR message (bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    StartUp,
    ExtInt,
    Reserved,
}

/// Destination shorthand of an ICR message (bits 19:18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    None,
    ToSelf,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An interprocessor interrupt the guest sent by writing the ICR (x2APIC
/// SELF_IPI is handled internally, never returned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    pub vector: u8,
    pub delivery: Delivery,
    pub logical: bool,
    pub level_assert: bool,
    pub level_triggered: bool,
    pub shorthand: Shorthand,
    /// xAPIC: ICR_HIGH bits 31:24; x2APIC: the 32-bit destination.
    pub dest: u32,
}

/// What a register write asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// An ICR write: the caller delivers it (to this APIC too, through
    /// `deliver`, when the shorthand or destination includes it).
    Ipi(Ipi),
    /// EOI of a vector whose TMR bit is set (level-triggered): for
    /// `KVM_EXIT_IOAPIC_EOI`.
    LevelEoi(u8),
    /// The timer was started, stopped or changed: re-read
    /// `timer_deadline()`.
    TimerChanged,
}

/// The timer modes of LVT bits 18:17 (SDM Vol. 3A 11.5.4 Table 11-2);
/// the reserved 11 counts as one-shot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

/// A running one-shot or periodic count. Deadline n (from 0) is `anchor`
/// plus n periods, each converted from ns at once, so a periodic timer
/// does not drift by a rounded cycle per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Count {
    anchor: u64,
    periods: u128,
    period_ns: u64,
}

/// One vCPU's local APIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lapic {
    regs: [u32; REGS],
    base: u64,
    /// The APIC ID the vCPU was created with: the x2APIC ID.
    x2apic_id: u32,
    tsc_khz: u64,
    count: Option<Count>,
    /// `IA32_TSC_DEADLINE`, 0 when disarmed.
    tsc_deadline: u64,
}

impl Lapic {
    /// Power-on state (SDM Vol. 3A 11.4.7.1; KVM's `kvm_lapic_reset`).
    pub fn new(id: u32, tsc_khz: u64) -> Self {
        let bsp = if id == 0 { APIC_BASE_BSP } else { 0 };
        let mut apic = Self {
            regs: [0; REGS],
            base: XAPIC_BASE | APIC_BASE_ENABLE | bsp,
            x2apic_id: id,
            tsc_khz: if tsc_khz == 0 {
                DEFAULT_TSC_KHZ
            } else {
                tsc_khz
            },
            count: None,
            tsc_deadline: 0,
        };
        apic.reset(false);
        apic
    }

    /// INIT: the power-on registers, but `IA32_APIC_BASE`, the ID and (in
    /// x2APIC mode) the LDR are kept (SDM Vol. 3A 11.4.7.3, 11.12.5.1).
    pub fn init(&mut self) {
        self.reset(true);
    }

    fn reset(&mut self, init: bool) {
        let id = self.reg(ID);
        let ldr = self.reg(LDR);
        self.regs = [0; REGS];
        self.set_reg(VERSION, VERSION_VALUE);
        self.set_reg(DFR, DFR_FLAT);
        self.set_reg(SVR, SVR_RESET);
        for lvt in LVTS {
            self.set_reg(lvt, LVT_MASKED);
        }
        if self.x2apic_id == 0 {
            self.set_reg(LVT_LINT0, LVT_LINT0_BSP_RESET);
        }
        if !init {
            self.set_reg(ID, self.x2apic_id << XAPIC_ID_SHIFT);
        } else {
            self.set_reg(ID, id);
            if self.mode() == Mode::X2Apic {
                self.set_reg(LDR, ldr);
            }
        }
        self.count = None;
        self.tsc_deadline = 0;
    }

    /// The APIC ID: the x2APIC ID, or in xAPIC mode the 8-bit ID.
    pub fn id(&self) -> u32 {
        match self.mode() {
            Mode::X2Apic => self.reg(ID),
            _ => self.reg(ID) >> XAPIC_ID_SHIFT,
        }
    }

    pub fn mode(&self) -> Mode {
        mode_of(self.base).unwrap_or(Mode::Disabled)
    }

    /// SVR bit 8 in a hardware-enabled APIC (SDM Vol. 3A 11.4.7.2).
    pub fn software_enabled(&self) -> bool {
        self.mode() != Mode::Disabled && self.reg(SVR) & SVR_ENABLE != 0
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    /// WRMSR `IA32_APIC_BASE`; `Err` is #GP (SDM Vol. 3A 11.12.5 State
    /// Transitions). The caller re-reads `timer_deadline()` and `base()`
    /// afterwards: disabling resets the APIC.
    pub fn set_base(&mut self, value: u64, host: bool) -> Result<(), ()> {
        if value & APIC_BASE_RESERVED != 0 {
            return Err(());
        }
        let new = mode_of(value).ok_or(())?;
        let old = self.mode();
        if !host
            && matches!(
                (old, new),
                (Mode::X2Apic, Mode::XApic) | (Mode::Disabled, Mode::X2Apic)
            )
        {
            return Err(());
        }
        // The BSP flag is the platform's, not the guest's.
        self.base = if host {
            value
        } else {
            (value & !APIC_BASE_BSP) | (self.base & APIC_BASE_BSP)
        };
        if old == new {
            return Ok(());
        }
        match new {
            Mode::Disabled => self.reset(false),
            Mode::XApic => {
                self.set_reg(ID, self.x2apic_id << XAPIC_ID_SHIFT);
                self.set_reg(ICR_HIGH, 0);
            }
            Mode::X2Apic => {
                self.set_reg(ID, self.x2apic_id);
                self.set_reg(LDR, x2apic_ldr(self.x2apic_id));
                self.set_reg(ICR_HIGH, 0);
            }
        }
        Ok(())
    }

    /// xAPIC MMIO read of the register at `offset` (16-byte aligned, below
    /// 0x1000). Write-only, absent and reserved registers, and misaligned
    /// offsets, read 0. Outside xAPIC mode the page reads all ones (KVM's
    /// `KVM_X86_QUIRK_LAPIC_MMIO_HOLE`).
    pub fn mmio_read(&self, offset: u32, now: u64) -> u32 {
        if self.mode() != Mode::XApic {
            return u32::MAX;
        }
        let readable = matches!(offset, APR | DFR | ICR_HIGH) || self.readable(offset);
        if readable { self.read(offset, now) } else { 0 }
    }

    /// The registers both modes read (KVM's `kvm_lapic_readable_reg_mask`
    /// less APR, DFR and ICR_HIGH, which x2APIC lacks).
    fn readable(&self, offset: u32) -> bool {
        matches!(
            offset,
            ID | VERSION | TPR | PPR | LDR | SVR | ESR | ICR_LOW | TMICT | TMCCT | TDCR
        ) || LVTS.contains(&offset)
            || (offset & 0xf == 0 && (ISR..IRR + 0x80).contains(&offset))
    }

    fn read(&self, offset: u32, now: u64) -> u32 {
        match offset {
            APR => 0,
            PPR => self.ppr(),
            TMCCT => self.current_count(now),
            _ => self.reg(offset),
        }
    }

    /// xAPIC MMIO write of the register at `offset`. Writes to read-only,
    /// absent or reserved registers are ignored, as are all writes outside
    /// xAPIC mode.
    pub fn mmio_write(&mut self, offset: u32, value: u32, now: u64) -> Effect {
        if self.mode() != Mode::XApic || offset & 0xf != 0 {
            return Effect::None;
        }
        match offset {
            ID => self.set_reg(ID, value & LDR_WRITABLE),
            LDR => self.set_reg(LDR, value & LDR_WRITABLE),
            DFR => self.set_reg(DFR, value | DFR_ONES),
            ICR_HIGH => self.set_reg(ICR_HIGH, value & LDR_WRITABLE),
            ICR_LOW => {
                let low = value & !ICR_BUSY;
                self.set_reg(ICR_LOW, low);
                let dest = self.reg(ICR_HIGH) >> XAPIC_ID_SHIFT;
                return Effect::Ipi(decode_icr(low, dest));
            }
            _ => return self.write(offset, value, now).unwrap_or(Effect::None),
        }
        Effect::None
    }

    /// The writes both modes share; `Err` for a register they cannot write.
    fn write(&mut self, offset: u32, value: u32, now: u64) -> Result<Effect, ()> {
        match offset {
            TPR => self.set_reg(TPR, value & 0xff),
            EOI => return Ok(self.eoi()),
            SVR => {
                self.set_reg(SVR, value & SVR_WRITABLE);
                // SDM Vol. 3A 11.4.7.2: software disable masks every LVT.
                if value & SVR_ENABLE == 0 {
                    for lvt in LVTS {
                        self.set_reg(lvt, self.reg(lvt) | LVT_MASKED);
                    }
                }
            }
            ESR => self.set_reg(ESR, 0),
            LVT_TIMER => {
                let old = self.timer_mode();
                self.set_reg(LVT_TIMER, self.lvt_value(value, LVT_TIMER_WRITABLE));
                return Ok(self.timer_mode_changed(old));
            }
            LVT_THERMAL | LVT_PERF => {
                self.set_reg(offset, self.lvt_value(value, LVT_MODE_WRITABLE));
            }
            LVT_LINT0 | LVT_LINT1 => {
                self.set_reg(offset, self.lvt_value(value, LVT_LINT_WRITABLE));
            }
            LVT_ERROR => self.set_reg(offset, self.lvt_value(value, LVT_COMMON)),
            TMICT => {
                // SDM Vol. 3A 11.5.4.1: TSC-deadline mode ignores TMICT.
                if self.timer_mode() == TimerMode::TscDeadline {
                    return Ok(Effect::None);
                }
                self.set_reg(TMICT, value);
                self.start_count(now, None);
                return Ok(Effect::TimerChanged);
            }
            TDCR => return Ok(self.set_divide(value, now)),
            _ => return Err(()),
        }
        Ok(Effect::None)
    }

    /// An LVT value as written: reserved bits dropped, and masked while the
    /// APIC is software-disabled (SDM Vol. 3A 11.4.7.2).
    fn lvt_value(&self, value: u32, writable: u32) -> u32 {
        let masked = if self.software_enabled() {
            0
        } else {
            LVT_MASKED
        };
        (value | masked) & writable
    }

    /// RDMSR of an x2APIC MSR; `Err` is #GP (SDM Vol. 3A 11.12.1.2, with
    /// KVM's set of readable registers).
    pub fn msr_read(&self, msr: u32, now: u64) -> Result<u64, ()> {
        let offset = self.x2apic_offset(msr)?;
        if offset == ICR_LOW {
            return Ok((u64::from(self.reg(ICR_HIGH)) << 32) | u64::from(self.reg(ICR_LOW)));
        }
        if !self.readable(offset) {
            return Err(());
        }
        Ok(u64::from(self.read(offset, now)))
    }

    /// WRMSR of an x2APIC MSR; `Err` is #GP: outside x2APIC mode, a
    /// register that is absent or read-only, bits 63:32 set (but in the
    /// ICR), ICR reserved bits, a nonzero EOI or ESR, SELF_IPI bits 31:8.
    pub fn msr_write(&mut self, msr: u32, value: u64, now: u64) -> Result<Effect, ()> {
        let offset = self.x2apic_offset(msr)?;
        if offset == ICR_LOW {
            if value & X2APIC_ICR_RESERVED != 0 {
                return Err(());
            }
            let low = value as u32 & !ICR_BUSY;
            let dest = (value >> 32) as u32;
            self.set_reg(ICR_LOW, low);
            self.set_reg(ICR_HIGH, dest);
            return Ok(Effect::Ipi(decode_icr(low, dest)));
        }
        let value = u32::try_from(value).map_err(|_| ())?;
        match offset {
            EOI | ESR if value != 0 => Err(()),
            SELF_IPI => {
                // SDM Vol. 3A 11.12.11: a fixed, edge-triggered self IPI.
                let vector = u8::try_from(value).map_err(|_| ())?;
                self.deliver(vector, false);
                Ok(Effect::None)
            }
            _ => self.write(offset, value, now),
        }
    }

    /// The register offset of x2APIC MSR `msr`, or #GP.
    fn x2apic_offset(&self, msr: u32) -> Result<u32, ()> {
        if self.mode() != Mode::X2Apic || !(X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr) {
            return Err(());
        }
        Ok((msr - X2APIC_MSR_FIRST) << 4)
    }

    /// RDMSR `IA32_TSC_DEADLINE`: 0 outside TSC-deadline mode (KVM).
    pub fn tsc_deadline(&self) -> u64 {
        if self.mode() == Mode::Disabled || self.timer_mode() != TimerMode::TscDeadline {
            return 0;
        }
        self.tsc_deadline
    }

    /// WRMSR `IA32_TSC_DEADLINE`: arms the timer (0 disarms) in TSC-deadline
    /// mode, ignored otherwise (SDM Vol. 3A 11.5.4.1). A deadline already
    /// past fires at the next `update_timer`.
    pub fn set_tsc_deadline(&mut self, value: u64, _now: u64) -> Effect {
        if self.mode() == Mode::Disabled || self.timer_mode() != TimerMode::TscDeadline {
            return Effect::None;
        }
        self.tsc_deadline = value;
        Effect::TimerChanged
    }

    /// The TPR; CR8 is `tpr >> 4` (SDM Vol. 3A 11.8.6.1).
    pub fn tpr(&self) -> u8 {
        self.reg(TPR) as u8
    }

    pub fn set_tpr(&mut self, tpr: u8) {
        self.set_reg(TPR, u32::from(tpr));
    }

    /// Whether a message to `dest` addresses this APIC (SDM Vol. 3A
    /// 11.6.2.1, 11.6.2.2, 11.12.10), as KVM's `kvm_apic_match_dest`
    /// decides it. A hardware-disabled APIC accepts nothing.
    pub fn matches(&self, dest: u32, logical: bool) -> bool {
        match self.mode() {
            Mode::Disabled => false,
            Mode::X2Apic => {
                if dest == u32::MAX {
                    return true;
                }
                if !logical {
                    return dest == self.x2apic_id;
                }
                let ldr = self.reg(LDR);
                ldr >> 16 == dest >> 16 && ldr & dest & 0xffff != 0
            }
            Mode::XApic => {
                if dest == 0xff {
                    return true;
                }
                if !logical {
                    // KVM also takes an ID too wide for xAPIC as x2APIC's.
                    return if dest > 0xff {
                        dest == self.x2apic_id
                    } else {
                        dest == self.reg(ID) >> XAPIC_ID_SHIFT
                    };
                }
                let id = self.reg(LDR) >> 24;
                match self.reg(DFR) {
                    DFR_FLAT => id & dest != 0,
                    DFR_CLUSTER => id >> 4 == dest >> 4 && id & dest & 0xf != 0,
                    _ => false,
                }
            }
        }
    }

    /// Accepts a fixed or lowest-priority interrupt (SDM Vol. 3A 11.5.5):
    /// IRR set, TMR set for level and cleared for edge. False when the APIC
    /// is (software-)disabled, or the vector is below 16 (then ESR's
    /// received-illegal-vector bit is set, SDM Vol. 3A 11.5.3).
    pub fn deliver(&mut self, vector: u8, level_triggered: bool) -> bool {
        if !self.software_enabled() {
            return false;
        }
        if vector < 16 {
            self.set_reg(ESR, self.reg(ESR) | ESR_RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        self.set_bit(IRR, vector, true);
        self.set_bit(TMR, vector, level_triggered);
        true
    }

    /// The vector to take now: the highest in the IRR whose priority class
    /// is above the PPR's (SDM Vol. 3A 11.8.3.1, 11.8.4).
    pub fn pending(&self) -> Option<u8> {
        if self.mode() == Mode::Disabled {
            return None;
        }
        let vector = self.highest(IRR)?;
        (u32::from(vector & 0xf0) > self.ppr()).then_some(vector)
    }

    /// The CPU took `vector`: IRR bit to ISR bit (SDM Vol. 3A 11.8.4). A
    /// vector not in the IRR changes nothing.
    pub fn acknowledge(&mut self, vector: u8) {
        if self.bit(IRR, vector) {
            self.set_bit(IRR, vector, false);
            self.set_bit(ISR, vector, true);
        }
    }

    /// The processor priority (SDM Vol. 3A 11.8.3.1): the TPR, or the
    /// class of the highest in-service vector where that is higher.
    fn ppr(&self) -> u32 {
        let tpr = self.reg(TPR) & 0xff;
        let isrv = self.highest(ISR).map_or(0, u32::from);
        if tpr & 0xf0 >= isrv & 0xf0 {
            tpr
        } else {
            isrv & 0xf0
        }
    }

    /// EOI (SDM Vol. 3A 11.8.5): retires the highest in-service vector.
    /// The TMR bit stays (KVM and the SDM clear it only on acceptance).
    fn eoi(&mut self) -> Effect {
        let Some(vector) = self.highest(ISR) else {
            return Effect::None;
        };
        self.set_bit(ISR, vector, false);
        if self.bit(TMR, vector) {
            Effect::LevelEoi(vector)
        } else {
            Effect::None
        }
    }

    /// When the timer next fires, as a guest TSC value; None when stopped.
    pub fn timer_deadline(&self) -> Option<u64> {
        match self.timer_mode() {
            TimerMode::TscDeadline => Some(self.tsc_deadline()).filter(|&d| d != 0),
            _ => self.count.map(|c| c.deadline(self.tsc_khz)),
        }
    }

    /// Fires the timer if `now` has reached its deadline: the LVT timer
    /// vector goes to the IRR unless masked; one-shot and TSC-deadline
    /// stop, periodic moves to its first deadline after `now` (missed
    /// periods give one interrupt). True if it expired.
    pub fn update_timer(&mut self, now: u64) -> bool {
        match self.timer_deadline() {
            Some(deadline) if now >= deadline => {}
            _ => return false,
        }
        match self.timer_mode() {
            TimerMode::TscDeadline => self.tsc_deadline = 0,
            TimerMode::OneShot => self.count = None,
            TimerMode::Periodic => self.count = self.count.and_then(|c| c.next(now, self.tsc_khz)),
        }
        let lvt = self.reg(LVT_TIMER);
        if lvt & LVT_MASKED == 0 {
            self.deliver((lvt & LVT_VECTOR) as u8, lvt & LVT_LEVEL != 0);
        }
        true
    }

    fn timer_mode(&self) -> TimerMode {
        match (self.reg(LVT_TIMER) & LVT_TIMER_MODE) >> 17 {
            1 => TimerMode::Periodic,
            2 => TimerMode::TscDeadline,
            _ => TimerMode::OneShot,
        }
    }

    /// After the LVT timer changed from mode `old` (KVM's
    /// `apic_update_lvtt`): entering or leaving TSC-deadline mode stops the
    /// timer and clears TMICT and the deadline; one-shot and periodic trade
    /// places with the count running.
    fn timer_mode_changed(&mut self, old: TimerMode) -> Effect {
        let new = self.timer_mode();
        if new == old {
            return Effect::None;
        }
        if (old == TimerMode::TscDeadline) != (new == TimerMode::TscDeadline) {
            self.count = None;
            self.tsc_deadline = 0;
            self.set_reg(TMICT, 0);
        } else if let Some(c) = self.count {
            let period_ns = self.limit_period(c.period_ns);
            self.count = Some(Count::new(c.deadline(self.tsc_khz), period_ns));
        }
        Effect::TimerChanged
    }

    /// The divide configuration (SDM Vol. 3A 11.5.4 Figure 11-10): bits 3,
    /// 1:0 = 000 divide by 2 ... 110 by 128, 111 by 1.
    fn divide(&self) -> u64 {
        let tdcr = self.reg(TDCR);
        let code = (tdcr & 3) | ((tdcr & 8) >> 1);
        1 << ((code + 1) & 7)
    }

    /// A TDCR write; a running count keeps its remaining time scaled to the
    /// new divide (KVM's `update_target_expiration`).
    fn set_divide(&mut self, value: u32, now: u64) -> Effect {
        let old = self.divide();
        self.set_reg(TDCR, value & 0xb);
        let new = self.divide();
        let Some(c) = self.count.filter(|_| new != old) else {
            return Effect::None;
        };
        let remaining = u128::from(c.deadline(self.tsc_khz).saturating_sub(now));
        let scaled = remaining * u128::from(new) / u128::from(old);
        let anchor = now.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX));
        let period_ns = self.limit_period(u64::from(self.reg(TMICT)) * new);
        self.count = (period_ns != 0).then(|| Count::new(anchor, period_ns));
        Effect::TimerChanged
    }

    /// Periodic timers run at least `MIN_PERIOD_NS` (KVM's
    /// `limit_periodic_timer_frequency`).
    fn limit_period(&self, period_ns: u64) -> u64 {
        if self.timer_mode() == TimerMode::Periodic && period_ns != 0 {
            period_ns.max(MIN_PERIOD_NS)
        } else {
            period_ns
        }
    }

    /// Starts a one-shot or periodic count of TMICT from `now`; `first` is
    /// the count to the first expiry where it is not TMICT (a restored
    /// TMCCT, as KVM's `set_target_expiration`).
    fn start_count(&mut self, now: u64, first: Option<u32>) {
        let divide = self.divide();
        let period_ns = self.limit_period(u64::from(self.reg(TMICT)) * divide);
        if period_ns == 0 {
            self.count = None;
            return;
        }
        let first_ns = match first.map(|c| u64::from(c) * divide) {
            None => period_ns,
            Some(0) if self.timer_mode() == TimerMode::Periodic => period_ns,
            Some(ns) => ns.min(period_ns),
        };
        let delay = if first_ns == 0 {
            0
        } else {
            ns_to_cycles(u128::from(first_ns), self.tsc_khz).max(1)
        };
        self.count = Some(Count::new(now.saturating_add(delay), period_ns));
    }

    /// TMCCT (SDM Vol. 3A 11.5.4): the time left to the deadline in bus
    /// cycles over the divide; 0 when stopped, expired or in TSC-deadline
    /// mode.
    fn current_count(&self, now: u64) -> u32 {
        let Some(c) = self.count else { return 0 };
        if self.reg(TMICT) == 0 || self.timer_mode() == TimerMode::TscDeadline {
            return 0;
        }
        let remaining = c.deadline(self.tsc_khz).saturating_sub(now);
        let ns = cycles_to_ns(remaining, self.tsc_khz).min(c.period_ns);
        u32::try_from(ns / self.divide()).unwrap_or(u32::MAX)
    }

    /// `KVM_GET_LAPIC`: the first KiB of the APIC page, TMCCT and PPR as a
    /// read would give them; in x2APIC mode the ID is the 32-bit x2APIC ID
    /// and ICR_HIGH the 32-bit destination (KVM's x2apic_format).
    pub fn get_state(&self, now: u64) -> [u8; 1024] {
        let mut page = [0; 1024];
        for (i, (slot, &reg)) in page
            .as_chunks_mut::<16>()
            .0
            .iter_mut()
            .zip(&self.regs)
            .enumerate()
        {
            let value = match (i as u32) << 4 {
                PPR => self.ppr(),
                TMCCT => self.current_count(now),
                _ => reg,
            };
            if let Some(word) = slot.first_chunk_mut::<4>() {
                *word = value.to_le_bytes();
            }
        }
        page
    }

    /// `KVM_SET_LAPIC` (KVM's `kvm_apic_set_state`): the registers as
    /// given, unmasked, but the version is fixed, the PPR recomputed and,
    /// in x2APIC mode, the LDR derived from the ID, which must be this
    /// APIC's (else `Err`, KVM's -EINVAL). The timer restarts from `now`
    /// with the image's TMCCT left to run (a zero TMCCT fires a one-shot at
    /// once); a TSC deadline survives only if both sides are in TSC-deadline
    /// mode.
    pub fn set_state(&mut self, regs: &[u8; 1024], now: u64) -> Result<(), ()> {
        let mut image = [0u32; REGS];
        for (word, slot) in image.iter_mut().zip(regs.as_chunks::<16>().0) {
            *word = slot
                .first_chunk::<4>()
                .map_or(0, |b| u32::from_le_bytes(*b));
        }
        let x2apic = self.mode() == Mode::X2Apic;
        if x2apic && image.get((ID >> 4) as usize) != Some(&self.x2apic_id) {
            return Err(());
        }
        let old = self.timer_mode();
        self.regs = image;
        let tmcct = self.reg(TMCCT);
        self.set_reg(TMCCT, 0);
        self.set_reg(PPR, 0);
        self.set_reg(VERSION, VERSION_VALUE);
        if x2apic {
            self.set_reg(LDR, x2apic_ldr(self.x2apic_id));
        }
        let new = self.timer_mode();
        if (old == TimerMode::TscDeadline) != (new == TimerMode::TscDeadline) {
            self.tsc_deadline = 0;
            self.set_reg(TMICT, 0);
        }
        self.count = None;
        if new != TimerMode::TscDeadline {
            self.start_count(now, Some(tmcct));
        }
        Ok(())
    }

    fn reg(&self, offset: u32) -> u32 {
        self.regs.get((offset >> 4) as usize).copied().unwrap_or(0)
    }

    fn set_reg(&mut self, offset: u32, value: u32) {
        if let Some(reg) = self.regs.get_mut((offset >> 4) as usize) {
            *reg = value;
        }
    }

    /// Bit `vector` of the 256-bit register at `base` (ISR, TMR or IRR:
    /// eight words 16 bytes apart).
    fn bit(&self, base: u32, vector: u8) -> bool {
        let word = base + u32::from(vector >> 5) * 0x10;
        self.reg(word) & (1 << (vector & 31)) != 0
    }

    fn set_bit(&mut self, base: u32, vector: u8, on: bool) {
        let word = base + u32::from(vector >> 5) * 0x10;
        let mask = 1 << (vector & 31);
        let value = self.reg(word);
        self.set_reg(word, if on { value | mask } else { value & !mask });
    }

    /// The highest vector set in the 256-bit register at `base`.
    fn highest(&self, base: u32) -> Option<u8> {
        (0..8u32).rev().find_map(|i| {
            let word = self.reg(base + i * 0x10);
            (word != 0).then(|| (i * 32 + 31 - word.leading_zeros()) as u8)
        })
    }
}

impl Count {
    fn new(anchor: u64, period_ns: u64) -> Self {
        Self {
            anchor,
            periods: 0,
            period_ns,
        }
    }

    fn deadline(&self, khz: u64) -> u64 {
        let ns = self.periods.saturating_mul(u128::from(self.period_ns));
        self.anchor.saturating_add(ns_to_cycles(ns, khz))
    }

    /// The count at the first deadline after `now` (None: past the end of
    /// the TSC, or no period). The smallest n with anchor + cycles(n * p)
    /// > now is ceil((now - anchor + 1) * 10^6 / (p * khz)).
    fn next(self, now: u64, khz: u64) -> Option<Self> {
        let elapsed = u128::from(now.saturating_sub(self.anchor)) + 1;
        let per_period = u128::from(self.period_ns).checked_mul(u128::from(khz))?;
        if per_period == 0 {
            return None;
        }
        // Past the current deadline, so n is past the current period too.
        let n = (elapsed * KHZ_PER_GHZ).div_ceil(per_period);
        let next = Self { periods: n, ..self };
        (next.deadline(khz) > now).then_some(next)
    }
}

/// The mode `IA32_APIC_BASE` selects; None for x2APIC without enable.
fn mode_of(base: u64) -> Option<Mode> {
    match (base & APIC_BASE_ENABLE != 0, base & APIC_BASE_X2APIC != 0) {
        (false, false) => Some(Mode::Disabled),
        (true, false) => Some(Mode::XApic),
        (true, true) => Some(Mode::X2Apic),
        (false, true) => None,
    }
}

/// The x2APIC logical ID: cluster ID[19:4] in bits 31:16, bit ID[3:0] in
/// bits 15:0 (SDM Vol. 3A 11.12.10.2).
fn x2apic_ldr(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xf))
}

fn decode_icr(low: u32, dest: u32) -> Ipi {
    let delivery = match (low >> 8) & 7 {
        0 => Delivery::Fixed,
        1 => Delivery::LowestPriority,
        2 => Delivery::Smi,
        4 => Delivery::Nmi,
        5 => Delivery::Init,
        6 => Delivery::StartUp,
        7 => Delivery::ExtInt,
        _ => Delivery::Reserved,
    };
    let shorthand = match (low >> 18) & 3 {
        0 => Shorthand::None,
        1 => Shorthand::ToSelf,
        2 => Shorthand::AllIncludingSelf,
        _ => Shorthand::AllExcludingSelf,
    };
    Ipi {
        vector: (low & ICR_VECTOR) as u8,
        delivery,
        logical: low & ICR_LOGICAL != 0,
        level_assert: low & ICR_ASSERT != 0,
        level_triggered: low & ICR_LEVEL != 0,
        shorthand,
        dest,
    }
}

/// TSC cycles in `ns` at `khz` (rounded down; saturating).
fn ns_to_cycles(ns: u128, khz: u64) -> u64 {
    let cycles = ns.saturating_mul(u128::from(khz)) / KHZ_PER_GHZ;
    u64::try_from(cycles).unwrap_or(u64::MAX)
}

/// Nanoseconds in `cycles` at `khz` (rounded down; `khz` is never 0).
fn cycles_to_ns(cycles: u64, khz: u64) -> u64 {
    let ns = (u128::from(cycles) * KHZ_PER_GHZ).checked_div(u128::from(khz));
    ns.and_then(|ns| u64::try_from(ns).ok()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2 GHz guest TSC: two cycles per APIC bus ns.
    const KHZ: u64 = 2_000_000;
    const TIMER_VECTOR: u32 = 0x40;
    const PERIODIC: u32 = 1 << 17;
    const TSC_DEADLINE: u32 = 2 << 17;
    /// TDCR 1011: divide by 1.
    const DIV1: u32 = 0xb;

    /// A software-enabled xAPIC.
    fn xapic(id: u32) -> Lapic {
        let mut apic = Lapic::new(id, KHZ);
        assert_eq!(apic.mmio_write(SVR, 0x1ff, 0), Effect::None);
        apic
    }

    /// A software-enabled x2APIC.
    fn x2apic(id: u32) -> Lapic {
        let mut apic = xapic(id);
        let base = apic.base() | APIC_BASE_X2APIC;
        assert_eq!(apic.set_base(base, false), Ok(()));
        apic
    }

    fn msr(offset: u32) -> u32 {
        X2APIC_MSR_FIRST + (offset >> 4)
    }

    #[test]
    fn power_on_values() {
        let bsp = Lapic::new(0, KHZ);
        assert_eq!(bsp.base(), 0xfee0_0900);
        assert_eq!(bsp.mmio_read(LVT_LINT0, 0), 0x700, "LINT0 quirk");
        let apic = Lapic::new(3, KHZ);
        assert_eq!(apic.base(), 0xfee0_0800);
        assert_eq!((apic.mode(), apic.id()), (Mode::XApic, 3));
        assert!(!apic.software_enabled());
        let expect = [
            (ID, 0x0300_0000),
            (VERSION, 0x0005_0014),
            (TPR, 0),
            (APR, 0),
            (PPR, 0),
            (EOI, 0),
            (LDR, 0),
            (DFR, 0xffff_ffff),
            (SVR, 0xff),
            (ESR, 0),
            (0x2f0, 0),
            (ICR_LOW, 0),
            (ICR_HIGH, 0),
            (LVT_TIMER, 0x1_0000),
            (LVT_THERMAL, 0x1_0000),
            (LVT_PERF, 0x1_0000),
            (LVT_LINT0, 0x1_0000),
            (LVT_LINT1, 0x1_0000),
            (LVT_ERROR, 0x1_0000),
            (TMICT, 0),
            (TMCCT, 0),
            (TDCR, 0),
        ];
        for (offset, value) in expect {
            assert_eq!(apic.mmio_read(offset, 0), value, "{offset:#x}");
        }
        assert_eq!(apic.timer_deadline(), None);
        assert_eq!((apic.tsc_deadline(), apic.pending()), (0, None));
    }

    #[test]
    fn id_version_ldr_in_both_modes() {
        let mut apic = xapic(5);
        apic.mmio_write(ID, 0x0712_3456, 0);
        apic.mmio_write(LDR, 0x8123_4567, 0);
        apic.mmio_write(DFR, 0x0000_0001, 0);
        assert_eq!(apic.mmio_read(ID, 0), 0x0700_0000);
        assert_eq!(apic.id(), 7);
        assert_eq!(apic.mmio_read(LDR, 0), 0x8100_0000);
        assert_eq!(apic.mmio_read(DFR, 0), 0x0fff_ffff);
        apic.mmio_write(VERSION, 0, 0);
        assert_eq!(apic.mmio_read(VERSION, 0), VERSION_VALUE, "read-only");
        assert_eq!(apic.msr_read(msr(ID), 0), Err(()), "xAPIC mode");

        let mut apic = x2apic(0x25);
        assert_eq!((apic.mode(), apic.id()), (Mode::X2Apic, 0x25));
        assert_eq!(apic.msr_read(msr(ID), 0), Ok(0x25));
        assert_eq!(apic.msr_read(msr(VERSION), 0), Ok(0x5_0014));
        assert_eq!(apic.msr_read(msr(LDR), 0), Ok((2 << 16) | (1 << 5)));
        assert_eq!(apic.mmio_read(ID, 0), u32::MAX, "no MMIO in x2APIC");
        assert_eq!(apic.mmio_write(TPR, 0x20, 0), Effect::None);
        assert_eq!(apic.tpr(), 0);
        // INIT keeps the x2APIC ID and LDR.
        apic.init();
        assert_eq!(apic.msr_read(msr(ID), 0), Ok(0x25));
        assert_eq!(apic.msr_read(msr(LDR), 0), Ok((2 << 16) | (1 << 5)));
    }

    #[test]
    fn base_transitions() {
        let mut apic = xapic(1);
        let base = apic.base();
        for bit in [0, 7, 9, 52, 63] {
            assert_eq!(apic.set_base(base | 1 << bit, false), Err(()), "{bit}");
            assert_eq!(apic.set_base(base | 1 << bit, true), Err(()), "{bit}");
        }
        let x2_only = (base & !APIC_BASE_ENABLE) | APIC_BASE_X2APIC;
        assert_eq!(apic.set_base(x2_only, true), Err(()));
        assert_eq!(apic.base(), base);
        // The BSP flag is read-only to the guest, not to the VMM.
        assert_eq!(apic.set_base(base | APIC_BASE_BSP, false), Ok(()));
        assert_eq!(apic.base(), base);
        assert_eq!(apic.set_base(base | APIC_BASE_BSP, true), Ok(()));
        assert_eq!(apic.base(), base | APIC_BASE_BSP);
        assert_eq!(apic.set_base(base, false), Ok(()));
        assert_eq!(apic.base(), base | APIC_BASE_BSP);
        // A moved page.
        let moved = 0xfed0_0000 | APIC_BASE_ENABLE | APIC_BASE_BSP;
        assert_eq!(apic.set_base(moved, false), Ok(()));
        assert_eq!(apic.base() & !0xfff, 0xfed0_0000);

        // x2APIC to xAPIC only through disabled (or by the VMM).
        let x2 = moved | APIC_BASE_X2APIC;
        assert_eq!(apic.set_base(x2, false), Ok(()));
        assert_eq!(apic.set_base(moved, false), Err(()));
        assert_eq!(apic.mode(), Mode::X2Apic);
        assert_eq!(apic.set_base(moved, true), Ok(()));
        assert_eq!((apic.mode(), apic.id()), (Mode::XApic, 1));
        assert_eq!(apic.set_base(x2, false), Ok(()));

        // Disabling resets everything but the base.
        apic.msr_write(msr(TPR), 0x30, 0).unwrap();
        apic.msr_write(msr(TMICT), 100, 0).unwrap();
        apic.deliver(0x50, false);
        let off = moved & !(APIC_BASE_ENABLE | APIC_BASE_X2APIC);
        assert_eq!(apic.set_base(off, false), Ok(()));
        assert_eq!((apic.mode(), apic.base()), (Mode::Disabled, off));
        assert!(!apic.deliver(0x60, false) && !apic.matches(1, false));
        assert_eq!((apic.pending(), apic.timer_deadline()), (None, None));
        assert_eq!(apic.set_base(x2, false), Err(()), "disabled to x2APIC");
        assert_eq!(apic.set_base(moved, false), Ok(()));
        let fresh = Lapic::new(1, KHZ);
        for offset in (0..0x400).step_by(0x10) {
            assert_eq!(apic.mmio_read(offset, 0), fresh.mmio_read(offset, 0));
        }
    }

    #[test]
    fn priorities() {
        let mut apic = xapic(0);
        // The TPR holds back classes at or below its own.
        apic.set_tpr(0x45);
        assert_eq!(apic.mmio_read(PPR, 0), 0x45);
        assert!(apic.deliver(0x41, false));
        assert_eq!(apic.pending(), None);
        assert!(apic.deliver(0x50, false));
        assert_eq!(apic.pending(), Some(0x50));
        apic.acknowledge(0x50);
        // In service 0x50 above TPR 0x45: PPR is its class.
        assert_eq!(apic.mmio_read(PPR, 0), 0x50);
        assert_eq!(apic.mmio_read(ISR + 0x20, 0), 1 << 16);
        assert!(apic.deliver(0x5f, false));
        assert_eq!(apic.pending(), None, "same class as the ISR");
        assert!(apic.deliver(0x61, false));
        assert_eq!(apic.pending(), Some(0x61), "nests above");
        apic.acknowledge(0x61);
        assert_eq!(apic.mmio_read(PPR, 0), 0x60);
        assert_eq!(apic.mmio_write(EOI, 0, 0), Effect::None);
        assert_eq!(apic.pending(), None, "0x50 still in service");
        assert_eq!(apic.mmio_write(EOI, 0, 0), Effect::None);
        assert_eq!(apic.mmio_read(PPR, 0), 0x45);
        assert_eq!(apic.pending(), Some(0x5f));
        // The TPR counts whole where its class is the ISR's.
        apic.set_tpr(0x52);
        apic.acknowledge(0x5f);
        assert_eq!(apic.mmio_read(PPR, 0), 0x52);
        apic.mmio_write(EOI, 0, 0);
        apic.deliver(0x5f, false);
        // A TPR above the ISR class wins; CR8-style writes.
        apic.set_tpr(0x70);
        assert_eq!((apic.tpr(), apic.pending()), (0x70, None));
        apic.mmio_write(TPR, 0xffff_ff10, 0);
        assert_eq!(apic.mmio_read(TPR, 0), 0x10);
        assert_eq!(apic.pending(), Some(0x5f));
    }

    #[test]
    fn deliver_acknowledge_eoi_order() {
        let mut apic = xapic(0);
        for vector in [0x30, 0xfe, 0x81, 0x20] {
            assert!(apic.deliver(vector, false));
        }
        assert!(apic.deliver(0x81, false), "already pending: one bit");
        assert_eq!(apic.mmio_read(IRR + 0x70, 0), 1 << 30);
        let mut taken = alloc::vec::Vec::new();
        while let Some(v) = apic.pending() {
            apic.acknowledge(v);
            taken.push(v);
            apic.mmio_write(EOI, 0, 0);
        }
        assert_eq!(taken, [0xfe, 0x81, 0x30, 0x20]);
        for i in 0..8 {
            assert_eq!(apic.mmio_read(IRR + i * 0x10, 0), 0);
            assert_eq!(apic.mmio_read(ISR + i * 0x10, 0), 0);
        }
        // Acknowledging a vector not requested changes nothing.
        apic.acknowledge(0x90);
        assert_eq!(apic.mmio_read(ISR + 0x40, 0), 0);
        assert_eq!(
            apic.mmio_write(EOI, 0, 0),
            Effect::None,
            "nothing in service"
        );
    }

    #[test]
    fn level_eoi_only_for_tmr_vectors() {
        let mut apic = xapic(0);
        assert!(apic.deliver(0x31, true));
        assert!(apic.deliver(0x32, false));
        assert_eq!(apic.mmio_read(TMR + 0x10, 0), 1 << 17);
        apic.acknowledge(0x32);
        apic.acknowledge(0x31);
        assert_eq!(apic.mmio_write(EOI, 0, 0), Effect::None, "0x32 edge");
        assert_eq!(apic.mmio_write(EOI, 0, 0), Effect::LevelEoi(0x31));
        // An edge delivery of the vector clears its TMR bit again.
        apic.deliver(0x31, false);
        assert_eq!(apic.mmio_read(TMR + 0x10, 0), 0);
        apic.acknowledge(0x31);
        assert_eq!(apic.mmio_write(EOI, 0, 0), Effect::None);
        // x2APIC EOI the same way.
        let mut apic = x2apic(2);
        apic.deliver(0xa0, true);
        apic.acknowledge(0xa0);
        assert_eq!(apic.msr_write(msr(EOI), 0, 0), Ok(Effect::LevelEoi(0xa0)));
    }

    #[test]
    fn illegal_vector_logs_esr() {
        let mut apic = xapic(0);
        assert!(!apic.deliver(15, false));
        assert_eq!(apic.mmio_read(ESR, 0), ESR_RECEIVE_ILLEGAL_VECTOR);
        assert_eq!((apic.mmio_read(IRR, 0), apic.pending()), (0, None));
        assert!(apic.deliver(16, false));
        apic.mmio_write(ESR, 0x1234, 0);
        assert_eq!(apic.mmio_read(ESR, 0), 0);
    }

    #[test]
    fn software_disabled_drops_and_masks() {
        let mut apic = Lapic::new(1, KHZ);
        assert!(!apic.deliver(0x40, false), "SVR 0xff: disabled");
        apic.mmio_write(LVT_LINT1, 0x400, 0);
        assert_eq!(apic.mmio_read(LVT_LINT1, 0), 0x1_0400, "kept masked");
        apic.mmio_write(SVR, 0x1ff, 0);
        assert!(apic.software_enabled());
        for lvt in LVTS {
            apic.mmio_write(lvt, 0x30, 0);
            assert_eq!(apic.mmio_read(lvt, 0), 0x30, "{lvt:#x}");
        }
        assert!(apic.deliver(0x40, false));
        apic.mmio_write(SVR, 0xff, 0);
        for lvt in LVTS {
            assert_eq!(apic.mmio_read(lvt, 0), 0x1_0030, "{lvt:#x}");
        }
        // The IRR is held: what was accepted is still taken.
        assert_eq!(apic.pending(), Some(0x40));
        assert!(!apic.deliver(0x41, false));
        // Write masks: LINT has trigger and polarity, the error LVT not.
        apic.mmio_write(SVR, 0xffff_ffff, 0);
        assert_eq!(apic.mmio_read(SVR, 0), 0x3ff);
        apic.mmio_write(LVT_LINT0, u32::MAX, 0);
        assert_eq!(apic.mmio_read(LVT_LINT0, 0), 0x1_f7ff);
        apic.mmio_write(LVT_ERROR, u32::MAX, 0);
        assert_eq!(apic.mmio_read(LVT_ERROR, 0), 0x1_10ff);
        apic.mmio_write(LVT_PERF, u32::MAX, 0);
        assert_eq!(apic.mmio_read(LVT_PERF, 0), 0x1_17ff);
        apic.mmio_write(LVT_TIMER, u32::MAX, 0);
        assert_eq!(apic.mmio_read(LVT_TIMER, 0), 0x7_10ff);
    }

    #[test]
    fn xapic_icr() {
        let mut apic = xapic(0);
        apic.mmio_write(ICR_HIGH, 0x0312_3456, 0);
        assert_eq!(apic.mmio_read(ICR_HIGH, 0), 0x0300_0000);
        let init = 0x0000_c500 | ICR_BUSY;
        let Effect::Ipi(ipi) = apic.mmio_write(ICR_LOW, init, 0) else {
            panic!("no IPI");
        };
        assert_eq!(
            ipi,
            Ipi {
                vector: 0,
                delivery: Delivery::Init,
                logical: false,
                level_assert: true,
                level_triggered: true,
                shorthand: Shorthand::None,
                dest: 3,
            }
        );
        assert_eq!(apic.mmio_read(ICR_LOW, 0), 0xc500, "no delivery status");
        let sipi = apic.mmio_write(ICR_LOW, 0x000c_4699, 0);
        let Effect::Ipi(ipi) = sipi else { panic!() };
        assert_eq!(ipi.delivery, Delivery::StartUp);
        assert_eq!(ipi.shorthand, Shorthand::AllExcludingSelf);
        assert_eq!((ipi.vector, ipi.level_assert), (0x99, true));
        let cases = [
            (0x0000_0830, Delivery::Fixed, true, Shorthand::None),
            (
                0x0004_0130,
                Delivery::LowestPriority,
                false,
                Shorthand::ToSelf,
            ),
            (
                0x0008_0200,
                Delivery::Smi,
                false,
                Shorthand::AllIncludingSelf,
            ),
            (0x0000_0300, Delivery::Reserved, false, Shorthand::None),
            (0x0000_0c00, Delivery::Nmi, true, Shorthand::None),
            (0x0000_0700, Delivery::ExtInt, false, Shorthand::None),
        ];
        for (low, delivery, logical, shorthand) in cases {
            let Effect::Ipi(ipi) = apic.mmio_write(ICR_LOW, low, 0) else {
                panic!("{low:#x}");
            };
            assert_eq!(
                (ipi.delivery, ipi.logical, ipi.shorthand),
                (delivery, logical, shorthand),
                "{low:#x}"
            );
        }
    }

    #[test]
    fn x2apic_icr_and_self_ipi() {
        let mut apic = x2apic(7);
        let value = 0x1234_5678_0000_4831;
        let Ok(Effect::Ipi(ipi)) = apic.msr_write(msr(ICR_LOW), value, 0) else {
            panic!("no IPI");
        };
        assert_eq!(
            (ipi.dest, ipi.vector, ipi.logical),
            (0x1234_5678, 0x31, true)
        );
        assert_eq!((ipi.delivery, ipi.level_assert), (Delivery::Fixed, true));
        assert_eq!(apic.msr_read(msr(ICR_LOW), 0), Ok(value));
        // Reserved ICR bits #GP; the delivery status bit is dropped.
        for bit in [13, 16, 17, 20, 31] {
            assert_eq!(apic.msr_write(msr(ICR_LOW), 1 << bit, 0), Err(()), "{bit}");
        }
        assert!(apic.msr_write(msr(ICR_LOW), 1 << 12, 0).is_ok());
        assert_eq!(apic.msr_read(msr(ICR_LOW), 0), Ok(0));
        // SELF_IPI: straight into this IRR, edge.
        apic.deliver(0x45, true);
        assert_eq!(apic.msr_write(msr(SELF_IPI), 0x45, 0), Ok(Effect::None));
        assert_eq!(apic.msr_read(msr(TMR + 0x20), 0), Ok(0));
        assert_eq!(apic.pending(), Some(0x45));
        assert_eq!(apic.msr_write(msr(SELF_IPI), 0x145, 0), Err(()));
        assert_eq!(apic.msr_read(msr(SELF_IPI), 0), Err(()), "write-only");
        assert_eq!(xapic(0).mmio_write(SELF_IPI, 0x45, 0), Effect::None);
    }

    #[test]
    fn x2apic_gp_rules() {
        let mut apic = x2apic(1);
        let readable = [
            0x802, 0x803, 0x808, 0x80a, 0x80d, 0x80f, 0x810, 0x817, 0x818, 0x81f, 0x820, 0x827,
            0x828, 0x830, 0x832, 0x837, 0x838, 0x839, 0x83e,
        ];
        for m in X2APIC_MSR_FIRST..=X2APIC_MSR_LAST {
            let expect = readable.contains(&m)
                || (0x810..=0x827).contains(&m)
                || (0x832..=0x837).contains(&m);
            assert_eq!(apic.msr_read(m, 0).is_ok(), expect, "{m:#x}");
        }
        assert_eq!(apic.msr_read(0x7ff, 0), Err(()));
        assert_eq!(apic.msr_read(0x900, 0), Err(()));
        // Writable: TPR, EOI, SVR, ESR, ICR, LVTs, TMICT, TDCR, SELF_IPI.
        let writable = [0x808, 0x80b, 0x80f, 0x828, 0x830, 0x838, 0x83e, 0x83f];
        for m in X2APIC_MSR_FIRST..=X2APIC_MSR_LAST {
            let expect = writable.contains(&m) || (0x832..=0x837).contains(&m);
            let value = if m == 0x83f { 0x30 } else { 0 };
            assert_eq!(apic.msr_write(m, value, 0).is_ok(), expect, "{m:#x}");
        }
        assert_eq!(apic.msr_write(0x808, 1 << 32, 0), Err(()));
        assert_eq!(apic.msr_write(0x80b, 1, 0), Err(()), "nonzero EOI");
        assert_eq!(apic.msr_write(0x828, 1, 0), Err(()), "nonzero ESR");
        // Other reserved bits are masked, not faulted.
        assert_eq!(apic.msr_write(0x808, 0xff33, 0), Ok(Effect::None));
        assert_eq!(apic.tpr(), 0x33);
        assert_eq!(apic.msr_write(0x80f, 0xffff_ffff, 0), Ok(Effect::None));
        assert_eq!(apic.msr_read(0x80f, 0), Ok(0x3ff));
        // Not in x2APIC mode: every access #GP.
        let mut apic = xapic(1);
        assert_eq!(apic.msr_read(0x808, 0), Err(()));
        assert_eq!(apic.msr_write(0x808, 0, 0), Err(()));
    }

    #[test]
    fn one_shot_timer_and_tmcct() {
        let mut apic = xapic(0);
        apic.mmio_write(TDCR, DIV1, 0);
        apic.mmio_write(LVT_TIMER, TIMER_VECTOR, 0);
        assert_eq!(apic.mmio_write(TMICT, 1000, 10_000), Effect::TimerChanged);
        // 1000 counts = 1000 ns = 2000 cycles at 2 GHz.
        assert_eq!(apic.timer_deadline(), Some(12_000));
        assert_eq!(apic.mmio_read(TMCCT, 10_000), 1000);
        assert_eq!(apic.mmio_read(TMCCT, 11_000), 500);
        assert_eq!(apic.mmio_read(TMCCT, 9_000), 1000, "before the start");
        assert!(!apic.update_timer(11_999));
        assert_eq!(apic.pending(), None);
        assert!(apic.update_timer(12_000));
        assert_eq!(apic.pending(), Some(0x40));
        assert_eq!(apic.timer_deadline(), None);
        assert!(!apic.update_timer(20_000), "one shot");
        assert_eq!(apic.mmio_read(TMCCT, 12_000), 0);
        assert_eq!(apic.mmio_read(TMICT, 12_000), 1000);
        // Divide by 16: 16 ns per count.
        apic.mmio_write(TDCR, 3, 0);
        apic.mmio_write(TMICT, 1000, 0);
        assert_eq!(apic.timer_deadline(), Some(32_000));
        assert_eq!(apic.mmio_read(TMCCT, 16_000), 500);
        // 0 stops it.
        assert_eq!(apic.mmio_write(TMICT, 0, 0), Effect::TimerChanged);
        assert_eq!(apic.timer_deadline(), None);
        // A TSC frequency of 0 counts as 1 GHz.
        let mut apic = Lapic::new(1, 0);
        apic.mmio_write(TMICT, 10, 100);
        assert_eq!(apic.timer_deadline(), Some(120), "divide 2 by default");
    }

    #[test]
    fn divide_configuration() {
        let table = [
            (0b0000, 2),
            (0b0001, 4),
            (0b0010, 8),
            (0b0011, 16),
            (0b1000, 32),
            (0b1001, 64),
            (0b1010, 128),
            (0b1011, 1),
        ];
        for (tdcr, divide) in table {
            let mut apic = xapic(0);
            apic.mmio_write(TDCR, tdcr | 0xffff_fff4, 0);
            assert_eq!(apic.mmio_read(TDCR, 0), tdcr);
            apic.mmio_write(TMICT, 1, 0);
            assert_eq!(apic.timer_deadline(), Some(2 * divide), "{tdcr:#b}");
        }
    }

    #[test]
    fn divide_change_rescales_the_remaining_time() {
        let mut apic = xapic(0);
        apic.mmio_write(TDCR, DIV1, 0);
        apic.mmio_write(TMICT, 1000, 0);
        // Half way (1000 cycles left), the divide goes to 2: 2000 left.
        assert_eq!(apic.mmio_write(TDCR, 0, 1000), Effect::TimerChanged);
        assert_eq!(apic.timer_deadline(), Some(3000));
        assert_eq!(apic.mmio_read(TMCCT, 1000), 500);
        assert_eq!(apic.mmio_write(TDCR, 0, 1000), Effect::None, "unchanged");
    }

    #[test]
    fn periodic_reload_and_missed_periods() {
        let mut apic = xapic(0);
        apic.mmio_write(TDCR, DIV1, 0);
        apic.mmio_write(LVT_TIMER, PERIODIC | TIMER_VECTOR, 0);
        apic.mmio_write(TMICT, 1_000_000, 0);
        assert_eq!(apic.timer_deadline(), Some(2_000_000));
        assert!(apic.update_timer(2_000_000));
        assert_eq!(apic.timer_deadline(), Some(4_000_000));
        assert_eq!(apic.mmio_read(TMCCT, 3_000_000), 500_000);
        apic.acknowledge(0x40);
        apic.mmio_write(EOI, 0, 0);
        // Four periods missed: one interrupt, the next deadline after now.
        assert!(apic.update_timer(10_500_000));
        assert_eq!(apic.timer_deadline(), Some(12_000_000));
        apic.acknowledge(0x40);
        assert_eq!(apic.pending(), None);
        assert!(apic.update_timer(12_000_000));
        assert_eq!(apic.timer_deadline(), Some(14_000_000));
        // No drift over many periods at an odd frequency.
        let mut apic = Lapic::new(1, 2_999_999);
        apic.mmio_write(SVR, 0x1ff, 0);
        apic.mmio_write(TDCR, DIV1, 0);
        apic.mmio_write(LVT_TIMER, PERIODIC | TIMER_VECTOR, 0);
        apic.mmio_write(TMICT, 333_333, 0);
        for _ in 0..3000 {
            let deadline = apic.timer_deadline().unwrap();
            assert!(apic.update_timer(deadline));
        }
        // 3001 periods of 333_333 ns at 2_999_999 kHz.
        let expect = 3001 * 333_333 * 2_999_999 / 1_000_000;
        assert_eq!(apic.timer_deadline(), Some(expect));
    }

    #[test]
    fn periodic_minimum_200us() {
        let mut apic = xapic(0);
        apic.mmio_write(TDCR, DIV1, 0);
        apic.mmio_write(LVT_TIMER, PERIODIC | TIMER_VECTOR, 0);
        apic.mmio_write(TMICT, 1000, 100);
        assert_eq!(apic.timer_deadline(), Some(100 + 400_000));
        assert!(apic.update_timer(400_100));
        assert_eq!(apic.timer_deadline(), Some(800_100));
        // One-shot is not limited.
        apic.mmio_write(LVT_TIMER, TIMER_VECTOR, 0);
        apic.mmio_write(TMICT, 1000, 0);
        assert_eq!(apic.timer_deadline(), Some(2000));
    }

    #[test]
    fn tsc_deadline_timer() {
        let mut apic = xapic(0);
        assert_eq!(
            apic.set_tsc_deadline(5000, 0),
            Effect::None,
            "one-shot mode"
        );
        assert_eq!(apic.tsc_deadline(), 0);
        let mode = apic.mmio_write(LVT_TIMER, TSC_DEADLINE | TIMER_VECTOR, 0);
        assert_eq!(mode, Effect::TimerChanged);
        assert_eq!(apic.timer_deadline(), None);
        assert_eq!(apic.set_tsc_deadline(5000, 0), Effect::TimerChanged);
        assert_eq!(
            (apic.tsc_deadline(), apic.timer_deadline()),
            (5000, Some(5000))
        );
        assert_eq!(apic.mmio_write(TMICT, 100, 0), Effect::None, "ignored");
        assert_eq!(apic.mmio_read(TMICT, 0), 0);
        assert_eq!(apic.mmio_read(TMCCT, 0), 0);
        assert!(!apic.update_timer(4999));
        assert!(apic.update_timer(5000));
        assert_eq!(apic.pending(), Some(0x40));
        assert_eq!((apic.tsc_deadline(), apic.timer_deadline()), (0, None));
        // Disarm.
        apic.set_tsc_deadline(9000, 6000);
        apic.set_tsc_deadline(0, 6000);
        assert_eq!(apic.timer_deadline(), None);
        assert!(!apic.update_timer(u64::MAX));
        // A deadline already past fires at once.
        apic.set_tsc_deadline(1, 6000);
        assert!(apic.update_timer(6000));
    }

    #[test]
    fn timer_mode_changes() {
        let mut apic = xapic(0);
        apic.mmio_write(TDCR, DIV1, 0);
        apic.mmio_write(TMICT, 1000, 0);
        // One-shot to periodic keeps the count (KVM's apic_update_lvtt).
        assert_eq!(
            apic.mmio_write(LVT_TIMER, PERIODIC | TIMER_VECTOR, 0),
            Effect::TimerChanged
        );
        assert_eq!(apic.timer_deadline(), Some(2000));
        assert!(apic.update_timer(2000));
        assert_eq!(apic.timer_deadline(), Some(2000 + 400_000), "now limited");
        assert_eq!(apic.mmio_write(LVT_TIMER, PERIODIC | 0x41, 0), Effect::None);
        // Into TSC-deadline mode: stopped, TMICT cleared.
        apic.mmio_write(LVT_TIMER, TSC_DEADLINE | TIMER_VECTOR, 0);
        assert_eq!(apic.timer_deadline(), None);
        assert_eq!(apic.mmio_read(TMICT, 0), 0);
        apic.set_tsc_deadline(7000, 0);
        // And out of it: the deadline is gone.
        apic.mmio_write(LVT_TIMER, TIMER_VECTOR, 0);
        assert_eq!((apic.timer_deadline(), apic.tsc_deadline()), (None, 0));
        apic.mmio_write(LVT_TIMER, TSC_DEADLINE | TIMER_VECTOR, 0);
        assert_eq!(apic.tsc_deadline(), 0);
    }

    #[test]
    fn masked_timer_fires_without_irr() {
        let mut apic = xapic(0);
        apic.mmio_write(LVT_TIMER, LVT_MASKED | TIMER_VECTOR, 0);
        apic.mmio_write(TMICT, 10, 0);
        assert!(apic.timer_deadline().is_some());
        assert!(apic.update_timer(1000));
        assert_eq!(apic.pending(), None);
        assert_eq!(apic.mmio_read(IRR + 0x20, 0), 0);
        assert_eq!(apic.timer_deadline(), None);
    }

    #[test]
    fn state_round_trip() {
        let mut apic = xapic(4);
        apic.mmio_write(TDCR, DIV1, 0);
        apic.mmio_write(LVT_TIMER, TIMER_VECTOR, 0);
        apic.mmio_write(LDR, 0x0100_0000, 0);
        apic.mmio_write(LVT_LINT0, 0x700, 0);
        apic.mmio_write(ICR_HIGH, 0x0200_0000, 0);
        apic.mmio_write(ICR_LOW, 0x4030, 0);
        apic.set_tpr(0x20);
        apic.deliver(0x33, true);
        apic.deliver(0x91, false);
        apic.acknowledge(0x91);
        apic.deliver(0x92, false);
        apic.mmio_write(TMICT, 5000, 1000);
        let image = apic.get_state(3000);
        assert_eq!(image.get(0x20..0x24), Some(&[0, 0, 0, 4][..]));
        assert_eq!(image.get(0x390..0x394), Some(&4000u32.to_le_bytes()[..]));
        assert_eq!(image.get(0xa0..0xa4), Some(&[0x90, 0, 0, 0][..]), "PPR");

        let mut copy = Lapic::new(4, KHZ);
        assert_eq!(copy.set_state(&image, 3000), Ok(()));
        assert_eq!(copy.get_state(3000), image);
        assert_eq!(copy.timer_deadline(), apic.timer_deadline());
        assert_eq!(copy.pending(), apic.pending());
        assert!(copy.software_enabled());

        // A one-shot count whose TMCCT reads 0 fires at once, as KVM's
        // set_target_expiration makes it; a periodic one waits a period.
        let mut expired = image;
        expired[0x390..0x394].fill(0);
        copy.set_state(&expired, 3000).unwrap();
        assert_eq!(copy.timer_deadline(), Some(3000));
        expired[0x322] = 0x02;
        copy.set_state(&expired, 3000).unwrap();
        assert_eq!(copy.timer_deadline(), Some(3000 + 400_000));

        // Fixed up on the way in: version, PPR.
        let mut bad = image;
        bad[0x30] = 0x15;
        bad[0xa0] = 0xff;
        copy.set_state(&bad, 3000).unwrap();
        assert_eq!(copy.get_state(3000), image);

        // A TSC deadline survives a TSC-deadline image only.
        let mut deadline = image;
        deadline[0x322] = 0x04;
        copy.mmio_write(LVT_TIMER, TSC_DEADLINE | TIMER_VECTOR, 0);
        copy.set_tsc_deadline(7777, 0);
        copy.set_state(&deadline, 3000).unwrap();
        assert_eq!(
            (copy.timer_deadline(), copy.mmio_read(TMICT, 0)),
            (Some(7777), 5000)
        );
        copy.set_state(&image, 3000).unwrap();
        assert_eq!(copy.mmio_read(TMICT, 0), 0, "KVM clears TMICT leaving it");
        assert_eq!(copy.timer_deadline(), None);
        copy.set_state(&deadline, 3000).unwrap();
        assert_eq!(copy.tsc_deadline(), 0);

        // A hardware-disabled APIC holds its IRR but offers nothing.
        let mut idle = image;
        idle[0x140..0x144].fill(0);
        copy.set_state(&idle, 3000).unwrap();
        assert_eq!(copy.pending(), Some(0x92));
        let mut off = Lapic::new(4, KHZ);
        off.set_base(XAPIC_BASE, false).unwrap();
        off.set_state(&idle, 3000).unwrap();
        assert_eq!((off.pending(), off.get_state(3000)[0x212]), (None, 0x08));

        // x2APIC: the image's ID must be this APIC's; LDR is derived.
        let mut x2 = x2apic(0x12);
        x2.msr_write(msr(ICR_LOW), 0x0000_0034_0000_0040, 0)
            .unwrap();
        let image = x2.get_state(0);
        assert_eq!(image.get(0x20..0x24), Some(&[0x12, 0, 0, 0][..]));
        assert_eq!(image.get(0x310..0x314), Some(&[0x34, 0, 0, 0][..]));
        let mut other = x2apic(0x13);
        assert_eq!(other.set_state(&image, 0), Err(()));
        let mut same = x2apic(0x12);
        let mut ldr = image;
        ldr[0xd0] = 0x55;
        assert_eq!(same.set_state(&ldr, 0), Ok(()));
        assert_eq!(same.get_state(0), image);
        assert_eq!(same.msr_read(msr(ICR_LOW), 0), Ok(0x34_0000_0040));
    }

    #[test]
    fn matching_destinations() {
        let mut apic = xapic(3);
        assert!(apic.matches(3, false) && !apic.matches(4, false));
        assert!(apic.matches(0xff, false) && apic.matches(0xff, true));
        assert!(!apic.matches(0x103, false));
        // Flat: LDR bits 31:24 against the 8-bit destination.
        apic.mmio_write(LDR, 0x0400_0000, 0);
        assert!(apic.matches(0x0c, true) && !apic.matches(0x03, true));
        // Cluster: cluster in the high nibble, members in the low.
        apic.mmio_write(DFR, 0x0fff_ffff, 0);
        apic.mmio_write(LDR, 0x2100_0000, 0);
        assert!(apic.matches(0x23, true));
        assert!(!apic.matches(0x13, true) && !apic.matches(0x22, true));
        // A wide ID takes the x2APIC ID, as KVM's hotplug rule.
        let wide = xapic(0x103);
        assert!(wide.matches(0x103, false) && wide.matches(0x03, false));
        // x2APIC.
        let apic = x2apic(0x25);
        assert!(apic.matches(0x25, false) && !apic.matches(0x05, false));
        assert!(apic.matches(u32::MAX, false) && !apic.matches(0xff, false));
        assert!(apic.matches(0x0002_0020, true));
        assert!(!apic.matches(0x0001_0020, true) && !apic.matches(0x0002_0010, true));
    }

    #[test]
    fn init_keeps_base_and_id() {
        let mut apic = xapic(0);
        apic.mmio_write(ID, 0x0900_0000, 0);
        apic.mmio_write(LDR, 0x0100_0000, 0);
        apic.mmio_write(TMICT, 100, 0);
        apic.deliver(0x50, false);
        let base = apic.base();
        apic.init();
        assert_eq!((apic.base(), apic.id()), (base, 9));
        assert_eq!(apic.mmio_read(LDR, 0), 0);
        assert_eq!(apic.mmio_read(SVR, 0), 0xff);
        assert_eq!(apic.mmio_read(LVT_LINT0, 0), 0x700);
        assert_eq!((apic.pending(), apic.timer_deadline()), (None, None));
    }

    /// xorshift64: a fixed stream of "random" values.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn no_panic_on_any_input() {
        let mut seed = 0x1234_5678_9abc_def1;
        let times = [0, 1, 1000, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        for round in 0..24 {
            let id = next(&mut seed) as u32;
            let khz = [0, 1, KHZ, u64::MAX][round % 4];
            let mut apic = Lapic::new(id, khz);
            let _ = apic.set_base(next(&mut seed), true);
            if round % 3 == 1 {
                let _ = apic.set_base(XAPIC_BASE | APIC_BASE_ENABLE | APIC_BASE_X2APIC, true);
            }
            for offset in (0..0x1000).step_by(4) {
                let r = next(&mut seed);
                let now = times[(r % 6) as usize].wrapping_add(r >> 60);
                let value = r as u32 | [0, 0x1_0000, 0x2_0000, 0x4_0000][(r >> 40) as usize % 4];
                let _ = apic.mmio_write(offset, value, now);
                let _ = apic.mmio_read(offset, now);
                let m = X2APIC_MSR_FIRST + (offset >> 4) % 0x100;
                let _ = apic.msr_write(m, r, now);
                let _ = apic.msr_write(m, r & 0xff, now);
                let _ = apic.msr_read(m, now);
                let _ = apic.set_tsc_deadline(r, now);
                apic.deliver(r as u8, r & 1 != 0);
                if let Some(v) = apic.pending() {
                    apic.acknowledge(v);
                }
                apic.update_timer(now);
                let _ = apic.timer_deadline();
                let _ = apic.matches(r as u32, r & 2 != 0);
            }
            let mut image = [0u8; 1024];
            for b in &mut image {
                *b = next(&mut seed) as u8;
            }
            for now in times {
                let _ = apic.set_state(&image, now);
                let _ = apic.get_state(now.wrapping_sub(1));
                apic.update_timer(now);
                apic.init();
            }
        }
        // A count started at the end of the TSC.
        let mut apic = xapic(0);
        apic.mmio_write(LVT_TIMER, PERIODIC | TIMER_VECTOR, 0);
        apic.mmio_write(TMICT, u32::MAX, u64::MAX - 5);
        assert_eq!(apic.timer_deadline(), Some(u64::MAX));
        assert!(apic.update_timer(u64::MAX));
        assert_eq!(apic.timer_deadline(), None, "no period fits");
        assert_eq!(apic.mmio_read(TMCCT, 0), 0);
    }
}
