//! The slow tests (`cargo xtask test --slow`; ignored by a plain `cargo
//! test`): memory exhaustion, a soak of ten million exits and an output
//! flood (`mojito_tests::slow`), under QEMU (SVM) and Bochs (VMX).

use mojito_tests::expect::Mode;
use mojito_tests::machine::{self, Disk};

/// QEMU TCG, SeaBIOS, `-cpu EPYC`, 512 MiB: the control domain's memory
/// runs out after a dozen 32 MiB VMs.
#[test]
#[ignore = "slow: cargo xtask test --slow"]
fn slow_qemu() {
    machine::qemu(
        "slow_qemu",
        Disk::SlowBios,
        xtask::qemu::TCG_SVM_CPU,
        512,
        1,
        &[],
        vec![],
    )
    .assert_slow(true);
}

/// Bochs (VMX), 512 MiB.
#[test]
#[ignore = "slow: cargo xtask test --slow"]
fn slow_bochs() {
    machine::bochs(
        "slow_bochs",
        xtask::bochs::DEFAULT_MODEL,
        512,
        1,
        Mode::Slow,
        vec![],
    )
    .assert_slow(false);
}
