//! `cargo xtask run`: boots Mojito with the serial console on this terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use xtask::bochs::{self, Bochs};
use xtask::qemu::{self, Boot, Qemu, Serial};
use xtask::runner::{self, Watch};
use xtask::workspace::command_line;
use xtask::{Workspace, image, parse_mem_mib, sysdeps};

/// The machine's defaults (DESIGN.md §3).
const DEFAULT_MEM: &str = "2G";
const DEFAULT_SMP: u32 = 2;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Number of CPUs [default: 2]
    #[arg(long, value_name = "N")]
    smp: Option<u32>,
    /// Memory, like 2G or 512M [default: 2G]
    #[arg(long, value_name = "SIZE")]
    mem: Option<String>,
    /// Add files to the boot bundle, as `image --add` does (`*.elf` files go
    /// to guests/; `boot.mojito` replaces the boot script; `mojito.conf` sets
    /// the hypervisor's options).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    add: Vec<PathBuf>,
    /// Boot the BIOS image (QEMU with SeaBIOS) instead of the UEFI one.
    #[arg(long)]
    bios: bool,
    /// Run the BIOS image in Bochs with a VMX CPU (Skylake-X) instead of QEMU.
    #[arg(long)]
    bochs: bool,
    /// A kernel to run as VM `guest`, as QEMU's -kernel: it goes into the
    /// boot bundle and the boot script creates and starts it (an ELF test
    /// guest or a multiboot kernel; Linux is refused until the Linux-guest
    /// issue)
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// The guest kernel's initrd (a multiboot module)
    #[arg(long, value_name = "PATH", requires = "kernel")]
    initrd: Option<PathBuf>,
    /// The guest kernel's command line
    #[arg(long, value_name = "STR", requires = "kernel")]
    append: Option<String>,
    /// The guest's vCPUs, 1 to 8 (an ELF test guest's; `create`'s cpus=)
    #[arg(long, value_name = "N", requires = "kernel")]
    guest_cpus: Option<u32>,
    /// The guest's memory, like 64M [default: 4M]
    #[arg(long, value_name = "SIZE", requires = "kernel")]
    guest_mem: Option<String>,
}

impl RunArgs {
    /// `--kernel` and its companions.
    fn guest_kernel(&self) -> Option<image::GuestKernel> {
        Some(image::GuestKernel {
            kernel: self.kernel.clone()?,
            initrd: self.initrd.clone(),
            append: self.append.clone(),
            cpus: self.guest_cpus,
            mem: self.guest_mem.clone(),
        })
    }

    fn images(&self, ws: &Workspace) -> Result<image::Images> {
        let kernel = self.guest_kernel();
        image::build_images(ws, &self.add, image::Purpose::Interactive(kernel.as_ref()))
    }
}

pub fn run(ws: &Workspace, args: RunArgs) -> Result<ExitCode> {
    let mem_mib = parse_mem_mib(args.mem.as_deref().unwrap_or(DEFAULT_MEM))?;
    if args.bochs {
        return run_bochs(ws, &args, mem_mib);
    }
    sysdeps::ensure(sysdeps::QEMU)?;
    let images = args.images(ws)?;
    let (accel, why) = qemu::choose_accel();
    println!("xtask: accelerator: {why}");
    let boot = if args.bios {
        Boot::Bios { image: images.bios }
    } else {
        let vars = qemu::fresh_vars(&ws.image_dir().join("OVMF_VARS_4M.fd"))?;
        Boot::UefiUsb {
            image: images.uefi,
            vars,
        }
    };
    let machine = Qemu {
        boot,
        accel,
        mem_mib,
        smp: args.smp.unwrap_or(DEFAULT_SMP),
        serial: Serial::Terminal,
        extra: Vec::new(),
    };
    let mut cmd = machine.command();
    println!("xtask: {}", command_line(&cmd));
    println!("xtask: Ctrl-A X quits QEMU");
    let status = cmd.status()?;
    println!("xtask: {}", qemu::describe_exit(status));
    let code = status.code().unwrap_or(1).clamp(0, 255) as u8;
    Ok(ExitCode::from(code))
}

fn run_bochs(ws: &Workspace, args: &RunArgs, mem_mib: u64) -> Result<ExitCode> {
    sysdeps::ensure(sysdeps::BOCHS)?;
    let images = args.images(ws)?;
    let dir = ws.image_dir().join("bochs-run");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let machine = Bochs {
        dir: dir.clone(),
        image: images.bios,
        cpu_model: bochs::DEFAULT_MODEL.into(),
        cpus: args.smp.unwrap_or(DEFAULT_SMP),
        mem_mib,
        com1_tcp: None,
        debugger_script: None,
    };
    let cmd = machine.prepare()?;
    println!(
        "xtask: Bochs, CPU model {} (VMX with EPT), {} CPUs, {mem_mib} MiB; its log: {}",
        machine.cpu_model,
        machine.cpus,
        ws.show(&machine.log_path())
    );
    println!("xtask: {}", command_line(&cmd));
    println!("xtask: Bochs always exits with status 1; Ctrl-C stops it");
    let watch = Watch {
        serial: machine.serial_path(),
        emulator_out: dir.join("bochs.out"),
        timeout: None,
        echo: true,
    };
    let outcome = runner::run(cmd, &watch)?;
    if outcome
        .serial
        .lines()
        .any(|l| l.trim_end() == xtask::POWER_OFF_LINE)
    {
        println!(
            "xtask: Bochs stopped after the hypervisor powered off ({:.1} s)",
            outcome.elapsed.as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let log = xtask::workspace::read_lossy(&machine.log_path());
    println!(
        "xtask: Bochs stopped before the hypervisor's last line; from {}:",
        ws.show(&machine.log_path())
    );
    for line in last(&bochs::interesting_log_lines(&log), 40) {
        println!("  {line}");
    }
    Ok(ExitCode::FAILURE)
}

fn last<'a>(lines: &'a [&'a str], n: usize) -> &'a [&'a str] {
    &lines[lines.len().saturating_sub(n)..]
}
