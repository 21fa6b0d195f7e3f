//! Interrupts: `KVM_INTERRUPT`, `KVM_SIGNAL_MSI`, `KVM_SET_GSI_ROUTING` and
//! the local APIC state (`KVM_GET_LAPIC`/`KVM_SET_LAPIC`).

/// The `KVM_INTERRUPT` argument: the vector to inject (userspace irqchip), or
/// the PIC's ExtINT vector (split irqchip).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_interrupt {
    pub irq: u32,
}

assert_layout!(struct kvm_interrupt, size 4, align 4, { irq: 0 });

/// [`kvm_msi::flags`] and [`kvm_irq_routing_entry::flags`]: `devid` is
/// valid.
pub const KVM_MSI_VALID_DEVID: u32 = 1 << 0;

/// The `KVM_SIGNAL_MSI` argument: one message-signalled interrupt.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_msi {
    pub address_lo: u32,
    pub address_hi: u32,
    pub data: u32,
    pub flags: u32,
    pub devid: u32,
    pub pad: [u8; 12],
}

assert_layout!(struct kvm_msi, size 32, align 4, {
    address_lo: 0, address_hi: 4, data: 8, flags: 12, devid: 16, pad: 20,
});

/// [`kvm_irq_routing_entry::type_`]: a pin of an in-kernel PIC/IOAPIC.
pub const KVM_IRQ_ROUTING_IRQCHIP: u32 = 1;
/// [`kvm_irq_routing_entry::type_`]: an MSI.
pub const KVM_IRQ_ROUTING_MSI: u32 = 2;
/// [`kvm_irq_routing_entry::type_`]: an s390 adapter interrupt.
pub const KVM_IRQ_ROUTING_S390_ADAPTER: u32 = 3;
/// [`kvm_irq_routing_entry::type_`]: a Hyper-V synthetic interrupt.
pub const KVM_IRQ_ROUTING_HV_SINT: u32 = 4;
/// [`kvm_irq_routing_entry::type_`]: a Xen event channel.
pub const KVM_IRQ_ROUTING_XEN_EVTCHN: u32 = 5;

/// [`kvm_irq_routing_irqchip::irqchip`]: the master 8259.
pub const KVM_IRQCHIP_PIC_MASTER: u32 = 0;
/// [`kvm_irq_routing_irqchip::irqchip`]: the slave 8259.
pub const KVM_IRQCHIP_PIC_SLAVE: u32 = 1;
/// [`kvm_irq_routing_irqchip::irqchip`]: the IOAPIC.
pub const KVM_IRQCHIP_IOAPIC: u32 = 2;

/// `u.irqchip` of a routing entry.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_irq_routing_irqchip {
    pub irqchip: u32,
    pub pin: u32,
}

assert_layout!(struct kvm_irq_routing_irqchip, size 8, align 4, { irqchip: 0, pin: 4 });

/// `u.msi` of a routing entry.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_irq_routing_msi {
    pub address_lo: u32,
    pub address_hi: u32,
    pub data: u32,
    /// C's anonymous union of `pad` and `devid`: the device id when the
    /// entry's flags have `KVM_MSI_VALID_DEVID`, else 0.
    pub devid: u32,
}

assert_layout!(struct kvm_irq_routing_msi, size 16, align 4, {
    address_lo: 0, address_hi: 4, data: 8, devid: 12,
});

/// `u.adapter` of a routing entry (s390 only; here for the union's layout).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_irq_routing_s390_adapter {
    pub ind_addr: u64,
    pub summary_addr: u64,
    pub ind_offset: u64,
    pub summary_offset: u32,
    pub adapter_id: u32,
}

assert_layout!(struct kvm_irq_routing_s390_adapter, size 32, align 8, {
    ind_addr: 0, summary_addr: 8, ind_offset: 16, summary_offset: 24, adapter_id: 28,
});

/// `u.hv_sint` of a routing entry.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_irq_routing_hv_sint {
    pub vcpu: u32,
    pub sint: u32,
}

assert_layout!(struct kvm_irq_routing_hv_sint, size 8, align 4, { vcpu: 0, sint: 4 });

/// `u.xen_evtchn` of a routing entry.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct kvm_irq_routing_xen_evtchn {
    pub port: u32,
    pub vcpu: u32,
    pub priority: u32,
}

assert_layout!(struct kvm_irq_routing_xen_evtchn, size 12, align 4, {
    port: 0, vcpu: 4, priority: 8,
});

/// The routing target, chosen by [`kvm_irq_routing_entry::type_`].
#[repr(C)]
#[derive(Clone, Copy)]
pub union kvm_irq_routing_entry_u {
    pub irqchip: kvm_irq_routing_irqchip,
    pub msi: kvm_irq_routing_msi,
    pub adapter: kvm_irq_routing_s390_adapter,
    pub hv_sint: kvm_irq_routing_hv_sint,
    pub xen_evtchn: kvm_irq_routing_xen_evtchn,
    pub pad: [u32; 8],
}

impl Default for kvm_irq_routing_entry_u {
    fn default() -> Self {
        Self { pad: [0; 8] }
    }
}

assert_layout!(union kvm_irq_routing_entry_u, size 32, align 8, {
    irqchip, msi, adapter, hv_sint, xen_evtchn, pad,
});

/// One GSI route of `KVM_SET_GSI_ROUTING`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct kvm_irq_routing_entry {
    pub gsi: u32,
    /// `KVM_IRQ_ROUTING_*`: which member of `u` is meant.
    pub type_: u32,
    pub flags: u32,
    pub pad: u32,
    pub u: kvm_irq_routing_entry_u,
}

assert_layout!(struct kvm_irq_routing_entry, size 48, align 8, {
    gsi: 0, type_: 4, flags: 8, pad: 12, u: 16,
});

/// Header of the `KVM_SET_GSI_ROUTING` argument: `nr`
/// [`kvm_irq_routing_entry`] structures follow it in memory (`entries`),
/// and replace the whole routing table.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct kvm_irq_routing {
    pub nr: u32,
    pub flags: u32,
    pub entries: [kvm_irq_routing_entry; 0],
}

assert_layout!(struct kvm_irq_routing, size 8, align 8, { nr: 0, flags: 4, entries: 8 });

/// Size of the local APIC register page in [`kvm_lapic_state`].
pub const KVM_APIC_REG_SIZE: u32 = 0x400;

/// The local APIC's registers as in its xAPIC MMIO page, first 1 KiB
/// (`KVM_GET_LAPIC`/`KVM_SET_LAPIC`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct kvm_lapic_state {
    pub regs: [u8; KVM_APIC_REG_SIZE as usize],
}

impl Default for kvm_lapic_state {
    fn default() -> Self {
        Self {
            regs: [0; KVM_APIC_REG_SIZE as usize],
        }
    }
}

assert_layout!(struct kvm_lapic_state, size 1024, align 1, { regs: 0 });
