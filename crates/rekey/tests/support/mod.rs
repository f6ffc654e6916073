//! Runs the built `rekey` binary (the one cargo already built for these
//! tests, never a rebuild) in a clean environment: its own HOME and working
//! directory, no AWS settings but those of the emulator it is pointed at.

#![allow(dead_code)]

use rekey_emulator::Emulator;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A command for the rekey binary with a clean environment, talking to
/// `emulator` if given.
pub fn rekey_cmd(emulator: Option<&Emulator>, home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_STATE_HOME", home.join(".state"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(home);
    if let Some(emulator) = emulator {
        cmd.envs(emulator.env());
    }
    cmd
}

pub fn rekey(emulator: Option<&Emulator>, args: &[&str]) -> Run {
    let home = tempfile::tempdir().expect("temp home");
    rekey_cmd(emulator, home.path()).args(args).output().expect("run rekey").into()
}

/// The emulator's count of AWS requests of one operation.
pub fn calls_of(emulator: &Emulator, operation: &str) -> u64 {
    emulator.calls()["by_operation"][operation].as_u64().unwrap_or(0)
}

pub fn total_calls(emulator: &Emulator) -> u64 {
    emulator.calls()["total"].as_u64().expect("total")
}
