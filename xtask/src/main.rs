//! `cargo xtask`: Mojito's developer commands (names from DESIGN.md §3).

mod cmd {
    pub mod bench;
    pub mod bench_linux;
    pub mod build;
    pub mod fuzz;
    pub mod run;
    pub mod test;
}

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use xtask::Workspace;

/// Build, pack, run and test the Mojito hypervisor.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the hypervisor and the guests (release, x86_64-unknown-none).
    Build,
    /// Build, then write the UEFI and BIOS disk images to target/mojito/.
    Image {
        /// Also write the UEFI image here: a file, or a USB stick's whole
        /// disk device (e.g. /dev/sdb), which is erased.
        #[arg(long, value_name = "PATH")]
        usb: Option<PathBuf>,
        /// Also write the BIOS image here.
        #[arg(long, value_name = "PATH")]
        bios: Option<PathBuf>,
        /// Add files to the boot bundle: `*.elf` files go to guests/ and
        /// start at boot, others keep their base name.
        #[arg(long, value_name = "FILE", num_args = 1..)]
        add: Vec<PathBuf>,
        /// Overwrite the --usb device without asking.
        #[arg(long, requires = "usb")]
        yes: bool,
    },
    /// Boot Mojito in QEMU (or Bochs) with the serial console on this terminal.
    Run(cmd::run::RunArgs),
    /// Run every test: host unit tests, then boots under QEMU (SVM) and
    /// Bochs (VMX).
    Test {
        /// Also run the long soak and Linux-guest tests.
        #[arg(long)]
        slow: bool,
    },
    /// Measure exit costs (QEMU -icount for SVM, Bochs for VMX), the VM
    /// lifecycle and the image size; writes target/bench/.
    Bench {
        /// What to measure: Mojito's exits by default, or `linux`: Debian's
        /// kernel booted directly in QEMU and under Mojito in that QEMU,
        /// the time to its userspace marker and the ratio.
        what: Option<BenchWhat>,
    },
    /// Fuzz the hypervisor's decoders against their oracles (cargo-fuzz;
    /// installed if missing).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        time: u32,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchWhat {
    Linux,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ws = Workspace::locate();
    let result = match cli.cmd {
        Cmd::Build => cmd::build::build(&ws).map(|()| ExitCode::SUCCESS),
        Cmd::Image {
            usb,
            bios,
            add,
            yes,
        } => cmd::build::image(&ws, usb, bios, &add, yes).map(|()| ExitCode::SUCCESS),
        Cmd::Run(args) => cmd::run::run(&ws, args),
        Cmd::Test { slow } => cmd::test::test(&ws, slow).map(|()| ExitCode::SUCCESS),
        Cmd::Bench { what: None } => cmd::bench::bench(&ws),
        Cmd::Bench {
            what: Some(BenchWhat::Linux),
        } => cmd::bench_linux::bench_linux(&ws),
        Cmd::Fuzz { time } => cmd::fuzz::fuzz(&ws, time).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("xtask: error: {e:#}");
        ExitCode::FAILURE
    })
}
