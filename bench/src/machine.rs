//! Where a number was measured: the machine (CPU model, cores, memory, load), the code (git
//! commit) and the build profile, read from `/proc` and git. Recorded next to every result.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;

/// The machine and code a benchmark ran on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model (`model name` of `/proc/cpuinfo`), `"unknown"` when unreadable.
    pub cpu: String,
    /// Logical cores this process may use.
    pub cores: usize,
    /// Physical memory (`MemTotal` of `/proc/meminfo`), 0 when unreadable.
    pub ram_bytes: u64,
    /// 1-, 5- and 15-minute load averages (`/proc/loadavg`) when read.
    pub load_avg: [f64; 3],
    /// `git rev-parse HEAD` of the workspace, with `-dirty` when the tree has uncommitted
    /// changes; `"unknown"` outside a git checkout.
    pub git_commit: String,
    /// Cargo profile of this binary (`release` or `debug`).
    pub profile: String,
}

impl Machine {
    /// Reads the machine now; `repo` is a directory inside the git checkout.
    pub fn read(repo: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ram_bytes: field(&meminfo, "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024),
            load_avg: load_avg(),
            git_commit: git_commit(repo).unwrap_or_else(|| "unknown".into()),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
        }
    }

    /// One line: `CPU, N cores, X GiB RAM, load a/b/c, commit C (profile)`.
    pub fn describe(&self) -> String {
        let [a, b, c] = self.load_avg;
        format!(
            "{}, {} cores, {:.1} GiB RAM, load {a:.2}/{b:.2}/{c:.2}, commit {} ({} build)",
            self.cpu,
            self.cores,
            self.ram_bytes as f64 / (1u64 << 30) as f64,
            self.git_commit,
            self.profile
        )
    }
}

/// The current 1-, 5- and 15-minute load averages (zeros when `/proc/loadavg` is unreadable).
pub fn load_avg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(0.0));
    [0; 3].map(|_| it.next().unwrap_or(0.0))
}

/// The value of the first `key : value` line of a `/proc` file.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The checked-out commit, `-dirty` if the work tree has changes.
fn git_commit(repo: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields() {
        let text = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t: a b\n";
        assert_eq!(
            field(text, "model name").as_deref(),
            Some("Some CPU @ 2.0GHz")
        );
        assert_eq!(field(text, "MemTotal"), None);
    }
}
