//! Boots the real images: SVM under QEMU TCG, VMX under Bochs. One test
//! binary, so the tests run in parallel; each takes a few seconds.
//!
//! Most boots run the test guests through the control domain and the KVM
//! API; the `builtin` ones boot an image without the control domain, where
//! the hypervisor runs them itself.

use mojito_tests::expect::Mode;
use mojito_tests::machine::{self, Disk};
use mojito_tests::typist::Keys;

/// What the operator types while the `spin` guest spins: the control
/// domain must answer at once (COM1 input ends the guest's RUN; D2), so
/// `list` shows `spin` still running (`expect::typing_problems`).
fn typing() -> Vec<Keys> {
    vec![Keys::serial(
        mojito_tests::expect::SPIN_LINE,
        "help\rfrob\rlist\r",
    )]
}

/// The UEFI image from an emulated USB stick (xHCI), OVMF, `-cpu EPYC`:
/// SVM with NPT, no NRIP save, no VGIF. The machine `cargo xtask run` boots.
/// Types commands while a guest spins.
#[test]
fn svm_qemu() {
    machine::qemu(
        "svm_qemu",
        Disk::UefiUsb,
        xtask::qemu::TCG_SVM_CPU,
        2048,
        2,
        &[],
        typing(),
    )
    .assert_all_guests_ran("SVM", true);
}

/// The BIOS image with `-icount shift=0,align=off`: the guest's TSC counts
/// instructions, so the demo's CPUID round trip is a path length that is the
/// same on every run (the bench issue's unit; FACTS.md).
#[test]
fn svm_qemu_bios_icount() {
    machine::qemu(
        "svm_qemu_bios_icount",
        Disk::Bios,
        xtask::qemu::TCG_SVM_CPU,
        512,
        1,
        &["-icount", "shift=0,align=off"],
        vec![],
    )
    .assert_all_guests_ran("SVM", true);
}

/// As `svm_qemu_bios_icount`, with the hypervisor running the guests
/// itself: the port round trip is then an exit handled in the hypervisor.
#[test]
fn svm_qemu_builtin_icount() {
    machine::qemu(
        "svm_qemu_builtin_icount",
        Disk::BuiltinBios,
        xtask::qemu::TCG_SVM_CPU,
        512,
        1,
        &["-icount", "shift=0,align=off"],
        vec![],
    )
    .assert_all_guests_ran("SVM", true);
}

/// The image without the control domain, SeaBIOS, `-cpu max`: SVM with NPT
/// and VGIF.
#[test]
fn svm_qemu_builtin_max() {
    machine::qemu(
        "svm_qemu_builtin_max",
        Disk::BuiltinBios,
        "max",
        2048,
        2,
        &[],
        vec![],
    )
    .assert_all_guests_ran("SVM", true);
}

/// The operator's shell over QEMU's COM1 (SVM): a whole session typed
/// (`mojito_tests::shell`), ended by `poweroff`, which must end QEMU with
/// status 0.
#[test]
fn shell_qemu() {
    machine::qemu(
        "shell_qemu",
        Disk::ShellBios,
        xtask::qemu::TCG_SVM_CPU,
        2048,
        2,
        &[],
        mojito_tests::shell::keys(600),
    )
    .assert_shell("SVM", true);
}

/// The shell at the machine's own screen: `info` typed on QEMU's PS/2
/// keyboard is answered, and both are drawn on the screen (found in a
/// screendump with the console's own font).
#[test]
fn shell_qemu_screen() {
    machine::qemu(
        "shell_qemu_screen",
        Disk::ShellBios,
        xtask::qemu::TCG_SVM_CPU,
        512,
        1,
        &[],
        mojito_tests::screen::keys(),
    )
    .assert_screen();
}

/// `reboot` at the shell resets the machine (QEMU's `-no-reboot` turns the
/// reset into its end).
#[test]
fn shell_qemu_reboot() {
    machine::qemu(
        "shell_qemu_reboot",
        Disk::ShellBios,
        xtask::qemu::TCG_SVM_CPU,
        512,
        2,
        &[],
        mojito_tests::shell::reboot_keys(),
    )
    .assert_rebooted();
}

/// `reboot` under Bochs (VMX): the machine resets and boots again, and
/// `poweroff` then ends it.
#[test]
fn shell_bochs_reboot() {
    machine::bochs(
        "shell_bochs_reboot",
        xtask::bochs::DEFAULT_MODEL,
        512,
        1,
        Mode::Shell,
        mojito_tests::shell::reboot_again_keys(),
    )
    .assert_booted_again();
}

/// The same session in Bochs (VMX), its COM1 a TCP socket; a shorter
/// random burst (every character echoed costs ~100 µs there).
#[test]
fn shell_bochs() {
    machine::bochs(
        "shell_bochs",
        xtask::bochs::DEFAULT_MODEL,
        2048,
        2,
        Mode::Shell,
        mojito_tests::shell::keys(200),
    )
    .assert_shell("VMX", false);
}

/// The BIOS image in Bochs, Skylake-X: VMX with EPT (A/D bits, 1G pages),
/// unrestricted guest, VPID, XSAVE/AVX. The machine `run --bochs` boots.
/// Types commands while a guest spins.
#[test]
fn vmx_bochs() {
    machine::bochs(
        "vmx_bochs",
        xtask::bochs::DEFAULT_MODEL,
        2048,
        2,
        Mode::Control,
        typing(),
    )
    .assert_all_guests_ran("VMX", false);
}

/// Bochs's oldest model with EPT and unrestricted guest (Westmere): no EPT
/// A/D bits, no 1G pages, and no XSAVE or AVX; the image without the
/// control domain.
#[test]
fn vmx_bochs_builtin_arrandale() {
    machine::bochs(
        "vmx_bochs_builtin_arrandale",
        "corei5_arrandale_m520",
        512,
        1,
        Mode::Builtin,
        vec![],
    )
    .assert_all_guests_ran("VMX", false);
}
