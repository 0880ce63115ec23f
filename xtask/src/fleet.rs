//! What the fleet tests need beyond one machine's observer: a Prometheus to
//! scrape it.

use anyhow::Result;

use crate::util::{apt_install, dpkg_installed, which};

/// Debian's `prometheus`, for the tests that scrape the observer (they start
/// their own instance on loopback; the package's service is not used).
pub fn ensure_prometheus() -> Result<()> {
    if which("prometheus").is_some() || dpkg_installed("prometheus") {
        return Ok(());
    }
    eprintln!("xtask: installing prometheus (the metrics tests scrape the observer with it)");
    apt_install(&["prometheus"])
}
