//! `--kvm-exits`: a tiny VM of our own under KVM (one vCPU in real mode
//! running N `out` instructions, then `hlt`), and the observer's count of
//! its exits for this process. The only way a VM touches the host kernel.

mod common;

use serde_json::Value;

const OUTS: usize = 37;

/// Runs the guest to its `hlt`; returns the IO exits KVM_RUN reported.
#[cfg(target_arch = "x86_64")]
fn tiny_vm(outs: usize) -> Result<u64, String> {
    use kvm_ioctls::{Kvm, VcpuExit};
    let kvm = Kvm::new().map_err(|e| format!("open /dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    const GUEST: u64 = 0x1000;
    const SIZE: usize = 0x4000;
    // SAFETY: a fresh anonymous mapping, owned for the VM's lifetime below.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_ANONYMOUS | libc::MAP_SHARED | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return Err("mmap guest memory".into());
    }
    let region = kvm_bindings::kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: GUEST,
        memory_size: SIZE as u64,
        userspace_addr: mem as u64,
        flags: 0,
    };
    // SAFETY: the region is the mapping above, which outlives the VM.
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    // mov dx, 0x3f8; mov al, 'k'; out dx, al (N times); hlt
    let mut code = vec![0xba, 0xf8, 0x03, 0xb0, b'k'];
    code.extend(std::iter::repeat_n(0xee, outs));
    code.push(0xf4);
    // SAFETY: the code fits the mapping (SIZE bytes).
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), mem as *mut u8, code.len()) };
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    regs.rip = GUEST;
    regs.rflags = 2;
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    let mut io = 0;
    let r = loop {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(0x3f8, _)) => io += 1,
            Ok(VcpuExit::Hlt) => break Ok(io),
            Ok(other) => break Err(format!("unexpected exit {other:?} after {io} IO exits")),
            Err(e) => break Err(format!("KVM_RUN: {e}")),
        }
    };
    drop(vcpu);
    drop(vm);
    // SAFETY: the mapping made above; the VM using it is gone.
    unsafe { libc::munmap(mem, SIZE) };
    r
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_observer_counts_a_vms_exits_for_its_process() {
    if !common::privileged() {
        return;
    }
    if !std::path::Path::new("/dev/kvm").exists() {
        observer::privilege::skip_or_fail("needs /dev/kvm");
        return;
    }
    let obs = common::Observer::start(&["--kvm-exits", "--interval", "0.2"]);
    let r = tiny_vm(OUTS);
    let records = obs.stop();
    let io = r.unwrap_or_else(|e| panic!("the tiny VM did not run under KVM here: {e}"));
    assert_eq!(io, OUTS as u64, "KVM_RUN reported every out");
    let me = u64::from(std::process::id());
    let last = records
        .of_type("kvm_exits")
        .last()
        .unwrap_or_else(|| panic!("no kvm_exits record; stderr: {}", records.stderr));
    let p: &Value = last["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == me)
        .unwrap_or_else(|| panic!("no exits counted for this process ({me}): {last}"));
    // Every exit KVM handed on to us, exactly: the N outs and the hlt.
    assert_eq!(p["to_vmm"]["IO"], OUTS as u64, "{p}");
    assert_eq!(p["to_vmm"]["HLT"], 1, "{p}");
    assert_eq!(p["to_vmm_total"], OUTS as u64 + 1, "{p}");
    // Exits to the host kernel, where this KVM reports them (`kvm_exit`
    // fires under VMX and SVM; a KVM without either, such as a nested
    // one that emulates, may not fire it at all).
    let exits = &p["exits"];
    let io_name = ["IO_INSTRUCTION", "io"]
        .into_iter()
        .find(|n| !exits[*n].is_null());
    match io_name {
        Some(n) => assert_eq!(exits[n], OUTS as u64, "{p}"),
        None => eprintln!(
            "note: kvm:kvm_exit did not fire for this process's IO here (exits: {exits}); the exits handed on to the VMM are exact"
        ),
    }
}
