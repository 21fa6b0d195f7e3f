//! `loader`: writes Mojito's disk images. `cargo xtask image` runs it, so
//! that xtask itself compiles in seconds without the `bootloader` builder.
//!
//! ```text
//! loader --kernel HYPERVISOR [--uefi OUT] [--bios OUT] [--bios-pad BYTES]
//!        [--file NAME=PATH]...
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use loader::{BundleFile, ImageRequest};

/// Packs the hypervisor and a boot bundle into UEFI and/or BIOS disk images.
#[derive(Parser)]
#[command(name = "loader")]
struct Args {
    /// The hypervisor kernel (ELF).
    #[arg(long, value_name = "PATH")]
    kernel: PathBuf,
    /// Write a UEFI image (GPT disk with an EFI system partition) here.
    #[arg(long, value_name = "OUT")]
    uefi: Option<PathBuf>,
    /// Write a BIOS image (MBR disk) here.
    #[arg(long, value_name = "OUT")]
    bios: Option<PathBuf>,
    /// Pad the BIOS image to a multiple of this many bytes (Bochs: 516096).
    #[arg(long, value_name = "BYTES", requires = "bios")]
    bios_pad: Option<u64>,
    /// Put the file at PATH into the boot bundle as NAME; repeat it, in
    /// bundle order.
    #[arg(long = "file", value_name = "NAME=PATH", value_parser = parse_file)]
    files: Vec<(String, PathBuf)>,
}

fn parse_file(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=PATH, got {arg:?}")),
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.uefi.is_none() && args.bios.is_none() {
        return Err("nothing to do: give --uefi OUT and/or --bios OUT".into());
    }
    let files = args
        .files
        .iter()
        .map(|(name, path)| BundleFile::from_path(name.clone(), path))
        .collect::<Result<Vec<_>, _>>()?;
    let req = ImageRequest {
        kernel: args.kernel,
        files,
        uefi: args.uefi,
        bios: args.bios,
        bios_pad_to: args.bios_pad,
    };
    loader::make_images(&req)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loader: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_argument() {
        assert_eq!(
            parse_file("guests/demo.elf=/x/demo").unwrap(),
            ("guests/demo.elf".into(), PathBuf::from("/x/demo"))
        );
        assert!(parse_file("noequals").is_err());
        assert!(parse_file("=path").is_err());
        assert!(parse_file("name=").is_err());
    }
}
