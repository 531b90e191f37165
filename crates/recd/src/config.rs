//! `recd config defaults`: prints every configuration key with its default value and a
//! one-line doc, as TOML that `recd serve --config` takes verbatim (the text comes from
//! `recd_server::config_doc`, derived from the config types).

use anyhow::Result;

/// `recd config ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print every config key with its default value and doc, as a TOML config file.
    Defaults,
}

/// `recd config ...`.
pub fn run(cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Defaults => {
            print!("{}", recd_server::config_doc::defaults_toml()?);
            Ok(())
        }
    }
}
