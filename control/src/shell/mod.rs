//! The operator's shell on COM1 (DESIGN.md §3 and D10): the `mojito> `
//! prompt with a line editor (`line`), the commands (`parse`), the VMs they
//! manage (`vms`), and what they show (`view`).
//!
//! One loop does everything, on the control domain's one vCPU: it reads
//! COM1 and the PS/2 keyboard (the console is mirrored on the screen,
//! `crate::console`), runs the boot script (`boot.mojito` of the bundle, a command a
//! line, echoed as if typed), and runs the VMs round robin. A VM runs until
//! it yields or stops; a `KVM_EXIT_INTR` (the hypervisor's timer, or COM1
//! input, D2) gives the shell a turn in between, so a command is answered
//! at once even while a guest never exits by itself. With nothing to run
//! the vCPU halts until the next tick or key.
//!
//! The boot script goes on while the operator types: its `wait` holds the
//! script (not the prompt) until the VMs have stopped.

pub mod line;
pub mod parse;
pub mod text;
#[cfg(target_os = "none")]
mod view;
#[cfg(target_os = "none")]
mod vms;

#[cfg(target_os = "none")]
pub use machine::*;

#[cfg(target_os = "none")]
mod machine {
    use alloc::collections::VecDeque;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::sync::atomic::Ordering;

    use vmm::vm::StopReason;

    use super::line::Editor;
    use super::parse::{self, Command};
    use super::vms::{self, Entry, State};
    use crate::{console, hv, println};

    /// The prompt (DESIGN.md §3).
    pub const PROMPT: &str = "mojito> ";
    /// The boot script's name in the bundle.
    pub const BOOT_SCRIPT: &str = "boot.mojito";
    /// Ctrl-]: leaves a guest's console, as in telnet and `virsh console`.
    const DETACH: u8 = 0x1d;
    /// Input bytes taken from COM1 per turn of the loop.
    const INPUT_PER_TURN: usize = 256;

    /// The shell's state.
    pub struct Shell {
        pub(super) bundle: abi::bundle::Bundle<'static>,
        pub(super) vms: Vec<Entry>,
        next_id: u32,
        editor: Editor,
        /// The boot script's lines still to run, borrowed from the bundle
        /// (nothing is freed as they run: `info`'s heap figure does not
        /// move with the script).
        script: VecDeque<&'static str>,
        /// The script waits for these VMs (empty: all) to stop.
        waiting: Option<Vec<String>>,
        /// The VM whose console is attached, and how far its output was
        /// printed.
        attached: Option<(u32, u64)>,
        /// Where the round robin goes on.
        next_run: usize,
        /// Whether stopped VMs print their exit streams (`streams`).
        streams: bool,
        /// The PS/2 keyboard, where there is one.
        keyboard: Option<crate::kbd::Keyboard>,
        /// Keys read and not yet handled.
        keys: Vec<u8>,
    }

    /// Finds the keyboard, or says on the console why there is none.
    fn keyboard() -> Option<crate::kbd::Keyboard> {
        use abi::kvm::mojito::{MOJITO_PLATFORM_NO_8042, MOJITO_PLATFORM_SCREEN};
        let platform = hv::info().map_or(0, |i| i.platform);
        if platform & MOJITO_PLATFORM_NO_8042 != 0 {
            if platform & MOJITO_PLATFORM_SCREEN != 0 {
                println!(
                    "control: no keyboard here: the firmware's FADT says there is no 8042 \
                     (a USB-only PC); this screen shows the console, type on COM1"
                );
            }
            return None;
        }
        let kbd = crate::kbd::Keyboard::init();
        if kbd.is_none() && platform & MOJITO_PLATFORM_SCREEN != 0 {
            println!(
                "control: no keyboard here: no 8042 controller answered; this screen shows the \
                 console, type on COM1"
            );
        }
        kbd
    }

    /// Runs the shell; never returns (`poweroff` and `reboot` end it).
    pub fn run(bundle: abi::bundle::Bundle<'static>) -> ! {
        let script = match bundle.get(BOOT_SCRIPT) {
            Some(f) => match core::str::from_utf8(f.data) {
                Ok(text) => text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .collect(),
                Err(_) => {
                    println!("control: {BOOT_SCRIPT} is not UTF-8 text; it is not run");
                    VecDeque::new()
                }
            },
            None => VecDeque::new(),
        };
        let mut sh = Shell {
            bundle,
            vms: Vec::new(),
            next_id: 1,
            editor: Editor::new(PROMPT),
            script,
            waiting: None,
            attached: None,
            next_run: 0,
            streams: false,
            keyboard: keyboard(),
            keys: Vec::new(),
        };
        println!("control: the shell is ready; type help (Ctrl-] leaves a guest's console)");
        console::set_prompt(Some(sh.editor.render()));
        console::show_prompt();
        loop {
            let _ = sh.poll_input();
            sh.step_script();
            if !sh.run_next() {
                // Nothing to run: sleep until the next tick or key.
                // SAFETY: HLT only parks the vCPU; the hypervisor wakes it on
                // its timer and on COM1 input (D2).
                unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
            }
        }
    }

    impl Shell {
        pub(super) fn find(&self, name: &str) -> Option<usize> {
            self.vms.iter().position(|e| e.name() == name)
        }

        fn index_of(&self, id: u32) -> Option<usize> {
            self.vms.iter().position(|e| e.id == id)
        }

        /// Reads what COM1 and the keyboard have: keys for the line
        /// editor, or for the attached guest. Returns whether there were
        /// any.
        fn poll_input(&mut self) -> bool {
            // At most a line's worth a turn: a UART that always says it has
            // data (a floating line) cannot keep the shell here for ever.
            while self.keys.len() < INPUT_PER_TURN {
                let Some(b) = console::read_byte() else {
                    break;
                };
                self.keys.push(b);
            }
            if let Some(k) = self.keyboard.as_mut() {
                k.poll(&mut self.keys);
            }
            let keys = core::mem::take(&mut self.keys);
            let any = !keys.is_empty();
            for b in keys {
                if let Some((id, _)) = self.attached {
                    if b == DETACH {
                        self.detach("detached");
                        continue;
                    }
                    let vm = self
                        .index_of(id)
                        .and_then(|i| self.vms[i].vm.as_mut())
                        .and_then(|vm| vm.uart());
                    if let Some(uart) = vm {
                        uart.queue_input(&[b]);
                    }
                    continue;
                }
                console::show_prompt();
                let step = self.editor.key(b);
                console::write_bytes(&step.echo);
                console::set_prompt(Some(self.editor.render()));
                if let Some(line) = step.line {
                    console::prompt_gone();
                    self.command(&line);
                }
            }
            any
        }

        /// Runs one command line with the prompt out of the way, then
        /// shows it again.
        fn command(&mut self, line: &str) {
            console::hide_prompt();
            console::set_prompt(None);
            match parse::parse(line) {
                Ok(None) => {}
                Ok(Some(c)) => self.execute(c, false),
                Err(e) => println!("{e}"),
            }
            if self.attached.is_none() {
                console::set_prompt(Some(self.editor.render()));
                console::show_prompt();
            }
        }

        /// Runs the boot script's next lines until it waits or ends.
        fn step_script(&mut self) {
            loop {
                if self.attached.is_some() {
                    return;
                }
                if let Some(names) = &self.waiting {
                    let busy = self
                        .vms
                        .iter()
                        .filter(|e| names.is_empty() || names.iter().any(|n| n == e.name()))
                        .any(Entry::busy);
                    if busy {
                        return;
                    }
                    self.waiting = None;
                }
                let Some(line) = self.script.pop_front() else {
                    return;
                };
                console::hide_prompt();
                console::set_prompt(None);
                println!("{PROMPT}{line}");
                match parse::parse(line) {
                    Ok(Some(Command::Wait(names))) => {
                        for n in names.iter().filter(|n| self.find(n).is_none()) {
                            println!("wait: there is no VM {n}");
                        }
                        self.waiting = Some(names);
                    }
                    Ok(Some(c)) => self.execute(c, true),
                    Ok(None) => {}
                    Err(e) => println!("{BOOT_SCRIPT}: {e}"),
                }
                if self.attached.is_none() {
                    console::set_prompt(Some(self.editor.render()));
                    console::show_prompt();
                }
            }
        }

        /// Runs the next running VM whose home is this CPU for a while,
        /// after lending the others to their CPUs' helpers where those are
        /// idle (`crate::smp`: they run there meanwhile); false if none
        /// runs here.
        fn run_next(&mut self) -> bool {
            crate::smp::collect(|job| self.take_back(job));
            let n = self.vms.len();
            for k in 0..n {
                let i = (self.next_run + k) % n;
                let e = &mut self.vms[i];
                // Not running, or lent (a lent VM's `vm` is with a helper).
                if e.state != State::Running || e.vm.is_none() {
                    continue;
                }
                let id = e.id;
                // The attached VM stays here: its keys and output are ours.
                let attached = self.attached.is_some_and(|(a, _)| a == id);
                let home = crate::smp::home(id);
                if home != 0 && !attached {
                    if let Some(vm) = e.vm.take() {
                        let job = crate::smp::Job {
                            id,
                            vm,
                            outcome: None,
                            ran_tsc: 0,
                        };
                        // Its helper is busy with another: that one's turn.
                        if let Some(job) = crate::smp::lend(home, job) {
                            e.vm = Some(job.vm);
                        }
                    }
                    continue;
                }
                self.next_run = i + 1;
                self.slice(id);
                return true;
            }
            false
        }

        /// A VM a helper gives back: its outcome handled as `slice` would.
        fn take_back(&mut self, job: crate::smp::Job) {
            let Some(i) = self.index_of(job.id) else {
                // Gone from the table (not possible: commands take every
                // VM back first); dropping it closes it.
                return;
            };
            let e = &mut self.vms[i];
            e.vm = Some(job.vm);
            e.ran_tsc += job.ran_tsc;
            let Some(outcome) = job.outcome else {
                return;
            };
            if outcome.reason == StopReason::Interrupted || outcome.reason.is_pause() {
                return;
            }
            vms::stopped(e, &outcome);
            if self.attached.is_some_and(|(a, _)| a == job.id) {
                self.detach("the VM stopped");
            }
        }

        /// Runs VM `id` until it yields or stops, giving the shell a turn
        /// at every `KVM_EXIT_INTR`: switching VMs only on yields keeps a
        /// guest's measured loops free of other guests.
        fn slice(&mut self, id: u32) {
            loop {
                let input = self.poll_input();
                let Some(i) = self.index_of(id) else {
                    return;
                };
                let e = &mut self.vms[i];
                if e.state != State::Running {
                    return;
                }
                let Some(vm) = e.vm.as_mut() else {
                    return;
                };
                if input {
                    // Input ends the next RUN at once (D2): that one INTR
                    // is ours, not a sign of a guest that never exits.
                    vm.forgive_intr();
                }
                let start = vms::rdtsc();
                let outcome = vm.run();
                e.ran_tsc += vms::rdtsc().wrapping_sub(start);
                self.forward_output();
                if outcome.reason == StopReason::Interrupted {
                    continue;
                }
                if outcome.reason.is_pause() {
                    return;
                }
                let e = &mut self.vms[i];
                vms::stopped(e, &outcome);
                if self.attached.is_some_and(|(a, _)| a == id) {
                    self.detach("the VM stopped");
                }
                return;
            }
        }

        /// Prints what the attached guest wrote since the last time, as
        /// it came.
        fn forward_output(&mut self) {
            let Some((id, mark)) = self.attached else {
                return;
            };
            let Some(vm) = self.index_of(id).and_then(|i| self.vms[i].vm.as_mut()) else {
                return;
            };
            let console = vm.console();
            let (bytes, _) = console.since(mark);
            let total = console.total();
            console::write_bytes(&bytes);
            self.attached = Some((id, total));
        }

        pub(super) fn attach(&mut self, i: usize) {
            let e = &mut self.vms[i];
            let name = e.spec.name.clone();
            let Some(vm) = e.vm.as_mut() else {
                let (out, lost) = (e.kept_output.clone(), e.kept_lost);
                println!("console: {name} has stopped; its last output:");
                if lost > 0 {
                    println!("({lost} earlier bytes were dropped from the ring)");
                }
                console::write_bytes(&out);
                println!("\n(end of {name}'s output)");
                return;
            };
            let (out, lost) = vm.console().since(0);
            let total = vm.console().total();
            println!(
                "console: attached to {name}; Ctrl-] detaches. Its recent output{}:",
                if lost > 0 {
                    alloc::format!(" ({lost} earlier bytes dropped from the ring)")
                } else {
                    String::new()
                }
            );
            vms::ATTACHED.store(true, Ordering::Relaxed);
            console::write_bytes(&out);
            self.attached = Some((e.id, total));
        }

        fn detach(&mut self, why: &str) {
            self.forward_output();
            self.attached = None;
            vms::ATTACHED.store(false, Ordering::Relaxed);
            console::write_bytes(b"\n");
            println!("console: {why}");
            console::set_prompt(Some(self.editor.render()));
            console::show_prompt();
        }

        /// Makes a VM for `spec`; says why not.
        fn create(&mut self, spec: parse::Create) {
            if self.find(&spec.name).is_some() {
                println!("create: there is a VM {} already", spec.name);
                return;
            }
            if self.vms.len() == vms::MAX_VMS {
                println!(
                    "create: {} VMs exist, the most there may be; destroy one first",
                    vms::MAX_VMS
                );
                return;
            }
            let id = self.next_id;
            let streams = self.streams;
            match vms::make(id, &spec, &self.bundle, streams) {
                Ok(vm) => {
                    let vcpus = vm.vcpu_count() as u32;
                    let cpus = if vcpus > 1 {
                        alloc::format!(" and {vcpus} vCPUs")
                    } else {
                        String::new()
                    };
                    println!(
                        "control: vm {id} ({}): created with {} MiB of RAM{cpus}",
                        spec.name,
                        spec.mem >> 20
                    );
                    self.next_id += 1;
                    self.vms.push(Entry {
                        id,
                        spec,
                        vcpus,
                        state: State::Created,
                        vm: Some(vm),
                        exits: Default::default(),
                        port_writes: Default::default(),
                        port_reads: Default::default(),
                        ran_tsc: 0,
                        started_tsc: None,
                        kept_output: Vec::new(),
                        kept_lost: 0,
                        echo: true,
                        streams,
                    });
                }
                Err(why) => {
                    // The hypervisor's line about the VM it closed.
                    hv::echo_log();
                    println!("create: {}: {why}; nothing was created", spec.name);
                }
            }
        }

        /// Makes entry `i`'s VM again from its kernel and runs it.
        fn remake(&mut self, i: usize, what: &str) {
            vms::close(&mut self.vms[i]);
            let e = &mut self.vms[i];
            match vms::make(e.id, &e.spec, &self.bundle, e.streams) {
                Ok(mut vm) => {
                    vm.console().set_echo(e.echo);
                    e.vm = Some(vm);
                    // An attached console follows the new VM from its
                    // first byte.
                    if let Some((id, mark)) = self.attached.as_mut()
                        && *id == e.id
                    {
                        *mark = 0;
                    }
                    e.state = State::Running;
                    e.ran_tsc = 0;
                    e.started_tsc = Some(vms::rdtsc());
                    println!("control: vm {} ({}): {what}", e.id, e.spec.name);
                }
                Err(why) => {
                    hv::echo_log();
                    e.state = State::Stopped(alloc::format!("could not be made again: {why}"));
                    println!("{what}: {}: {why}", e.spec.name);
                }
            }
        }

        /// Closes every VM (before power-off or reset).
        fn close_all(&mut self) {
            for e in &mut self.vms {
                vms::close(e);
                if e.busy() {
                    e.state = State::Stopped("closed for the power-off or reset".into());
                }
            }
        }

        /// Carries out a command (`script`: it came from the boot script).
        fn execute(&mut self, c: Command, script: bool) {
            // Every VM back from the helpers: a command may look at any.
            let mut lost = Vec::new();
            crate::smp::recall(|job| self.take_back(job), |id| lost.push(id));
            for id in lost {
                if let Some(i) = self.index_of(id) {
                    self.vms[i].state = State::Stopped("lost with its helper's vCPU".into());
                }
            }
            let named = |sh: &Self, name: &str, cmd: &str| {
                let i = sh.find(name);
                if i.is_none() {
                    println!("{cmd}: there is no VM {name} (list shows them)");
                }
                i
            };
            match c {
                Command::Help(topic) => super::view::help(topic.as_deref()),
                Command::Info => super::view::info(self),
                Command::List => super::view::list(self),
                Command::Ls => super::view::ls(self),
                Command::Log => hv::print_whole_log(),
                Command::Layout => hv::log_layout(),
                Command::Stats(name) => {
                    if let Some(i) = named(self, &name, "stats") {
                        super::view::stats(self, i);
                    }
                }
                Command::Show(path) => super::view::show(self, path.as_deref().unwrap_or("")),
                Command::Create(spec) => self.create(spec),
                Command::Start(name) => {
                    let Some(i) = named(self, &name, "start") else {
                        return;
                    };
                    let e = &mut self.vms[i];
                    match e.state {
                        State::Created => {
                            e.state = State::Running;
                            e.started_tsc = Some(vms::rdtsc());
                            if !script {
                                println!("control: vm {} ({name}): started", e.id);
                            }
                        }
                        State::Stopped(_) => self.remake(i, "started again"),
                        State::Running => println!("start: {name} is running already"),
                        State::Paused => println!("start: {name} is paused; resume it"),
                    }
                }
                Command::Pause(name) => {
                    let Some(i) = named(self, &name, "pause") else {
                        return;
                    };
                    let e = &mut self.vms[i];
                    if e.state == State::Running {
                        e.state = State::Paused;
                        println!("control: vm {} ({name}): paused", e.id);
                    } else {
                        println!("pause: {name} is not running ({})", e.state);
                    }
                }
                Command::Resume(name) => {
                    let Some(i) = named(self, &name, "resume") else {
                        return;
                    };
                    let e = &mut self.vms[i];
                    if e.state == State::Paused {
                        e.state = State::Running;
                        println!("control: vm {} ({name}): resumed", e.id);
                    } else {
                        println!("resume: {name} is not paused ({})", e.state);
                    }
                }
                Command::Reset(name) => {
                    if let Some(i) = named(self, &name, "reset") {
                        self.remake(i, "reset");
                    }
                }
                Command::Destroy(name) => {
                    let Some(i) = named(self, &name, "destroy") else {
                        return;
                    };
                    if self.attached.is_some_and(|(a, _)| a == self.vms[i].id) {
                        self.detach("the VM is destroyed");
                    }
                    let mut e = self.vms.remove(i);
                    let held = e.vm.is_some();
                    vms::close(&mut e);
                    if held {
                        println!(
                            "control: vm {} ({name}): destroyed; {} MiB of RAM given back",
                            e.id,
                            e.spec.mem >> 20
                        );
                    } else {
                        println!(
                            "control: vm {} ({name}): destroyed (its RAM went back when it \
                             stopped)",
                            e.id
                        );
                    }
                }
                Command::Console(name) => {
                    if let Some(i) = named(self, &name, "console") {
                        self.attach(i);
                    }
                }
                Command::Echo { name, on } => {
                    let Some(i) = named(self, &name, "echo") else {
                        return;
                    };
                    let e = &mut self.vms[i];
                    e.echo = on;
                    if let Some(vm) = e.vm.as_mut() {
                        vm.console().set_echo(on);
                    }
                    let state = if on { "on" } else { "off" };
                    println!("echo: {name}'s lines {state}");
                }
                Command::Wait(_) => {
                    let busy: Vec<&str> = self
                        .vms
                        .iter()
                        .filter(|e| e.busy())
                        .map(Entry::name)
                        .collect();
                    if busy.is_empty() {
                        println!("wait: no VM runs");
                    } else {
                        println!(
                            "wait: for the boot script only; still running: {}",
                            busy.join(", ")
                        );
                    }
                }
                Command::Streams(on) => {
                    self.streams = on;
                    let state = if on { "on" } else { "off" };
                    println!("streams: {state}");
                }
                Command::Poweroff => {
                    self.close_all();
                    println!("control: powering off");
                    hv::power_off();
                    println!("poweroff: the machine has no working power-off");
                }
                Command::Reboot => {
                    self.close_all();
                    println!("control: rebooting");
                    let e = hv::reboot();
                    println!("reboot: the hypervisor could not reset the machine (-{e})");
                }
            }
        }
    }
}
