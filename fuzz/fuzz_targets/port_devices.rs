//! The VMM's device models through their register interface: the port bus
//! with the 16550 UART, the i8254 PIT and port 0x61, the CMOS RTC and the
//! debug ports, driven by arbitrary accesses of every width while the
//! clock moves by arbitrary amounts. A model must answer every access
//! without panicking (no index out of range, no overflow in the count
//! arithmetic, whatever the mode, access state or time), a read must fill
//! exactly the bytes asked for, and the clock's moves keep the PIT's and
//! RTC's arithmetic honest. Each 6-byte record is one access: op (bit 0
//! write, bits 2:1 size 1/2/4), port selector, value (2 bytes), clock
//! advance (2 bytes, scaled by op's high bits up to ~17 s).

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vmm::clock::ManualClock;
use vmm::devices::debug::{DebugCon, DebugExit, PostPort};
use vmm::devices::pit::{self, PIT_BASE, PIT_LEN, PORT_B};
use vmm::devices::rtc::{RTC_BASE, RTC_LEN, Rtc};
use vmm::devices::uart::{COM1, UART_LEN, Uart};
use vmm::devices::{Effect, PortBus};

/// Ports worth hitting: every register of each model, a neighbour of each
/// range, and an unclaimed one.
const PORTS: [u16; 24] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x61, 0x60, 0x70, 0x71, 0x72, 0x3f8, 0x3f9, 0x3fa, 0x3fb,
    0x3fc, 0x3fd, 0x3fe, 0x3ff, 0x400, 0x80, 0xe9, 0xf4, 0x2e, 0xffff,
];

fuzz_target!(|data: &[u8]| {
    let clock = Arc::new(ManualClock::new(1_795_385_625_000_000_000));
    let mut bus = PortBus::new();
    let (p, b) = pit::new(clock.clone());
    bus.insert(PIT_BASE, PIT_LEN, Box::new(p)).unwrap();
    bus.insert(PORT_B, 1, Box::new(b)).unwrap();
    bus.insert(RTC_BASE, RTC_LEN, Box::new(Rtc::new(clock.clone()))).unwrap();
    bus.insert(COM1, UART_LEN, Box::new(Uart::new())).unwrap();
    bus.insert(0x80, 1, Box::new(PostPort)).unwrap();
    bus.insert(0xe9, 1, Box::new(DebugCon)).unwrap();
    bus.insert(0xf4, 4, Box::new(DebugExit)).unwrap();
    for rec in data.as_chunks::<6>().0 {
        let (op, sel) = (rec[0], rec[1]);
        let port = PORTS[usize::from(sel) % PORTS.len()];
        let size = [1usize, 2, 4, 1][usize::from(op >> 1) & 3];
        let value = u32::from(u16::from_le_bytes([rec[2], rec[3]])) * 0x0001_0001;
        let advance = u64::from(u16::from_le_bytes([rec[4], rec[5]])) << ((op >> 3) & 0x1f);
        clock.advance(advance.min(1 << 34));
        if op & 1 == 1 {
            let effect = bus.write(port, &value.to_le_bytes()[..size]);
            if port == 0xf4 {
                assert!(matches!(effect, Effect::Exit(_)));
            }
        } else {
            let mut buf = [0xa5u8; 4];
            bus.read(port, &mut buf[..size]);
            assert!(buf[size..].iter().all(|&b| b == 0xa5), "a read wrote past its size");
        }
    }
});
