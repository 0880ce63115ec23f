//! Kernel side of the observer: tag every event with who did it (cgroup,
//! namespaces, both PID views) at the moment it happens, then either count it
//! in a per-CPU map or hand it to the daemon through the ring buffer. Nothing
//! here formats or resolves names.
#![no_std]
#![no_main]

mod cgroup;
mod enforce;
mod kvm;
mod maps;
mod rare;
mod sched;
mod syscalls;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
