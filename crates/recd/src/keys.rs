//! `recd keys create`: a new API key, printed once, with the entry to put in the config.
//!
//! The key itself is never stored anywhere by recd: only its SHA-256 goes into the config
//! (or the keys file), so the printed key is the only copy.

use anyhow::Result;
use recd_server::access::Grant;
use recd_server::access::keys::{generate_key, hash_key, validate_name};
use serde_json::json;

use crate::UsageError;

/// `recd keys` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a new key and print it with its config entry.
    Create(CreateArgs),
}

/// `recd keys create` flags.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Who holds the key (shown in logs; the unit of per-key rate limits).
    #[arg(long)]
    name: String,
    /// Comma-separated scopes: read, write, admin. A key has exactly these (admin does
    /// not imply write or read).
    #[arg(long, value_delimiter = ',', required = true)]
    scopes: Vec<String>,
    /// Print one JSON object {name, key, hash, scopes} instead of text.
    #[arg(long)]
    json: bool,
}

/// `recd keys ...`.
pub fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Create(args) => create(args),
    }
}

fn create(args: CreateArgs) -> Result<()> {
    validate_name(&args.name).map_err(UsageError)?;
    let mut scopes = Vec::new();
    for s in &args.scopes {
        let grant = Grant::parse(s).ok_or_else(|| {
            UsageError(format!(
                "--scopes: '{s}' is not a scope (read, write, admin)"
            ))
        })?;
        if !scopes.contains(&grant) {
            scopes.push(grant);
        }
    }
    scopes.sort();
    let key = generate_key()?;
    let hash = hash_key(&key);
    let names: Vec<&str> = scopes.iter().map(|g| g.as_str()).collect();
    if args.json {
        println!(
            "{}",
            json!({"name": args.name, "key": key, "hash": hash, "scopes": names})
        );
        return Ok(());
    }
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "API key for '{}' (shown only now; recd keeps only its hash):",
        args.name
    );
    println!();
    println!("  {key}");
    println!();
    println!("Add this entry to the config (a keys file takes it as [[keys]]):");
    println!();
    println!("[[auth.keys]]");
    println!("name = \"{}\"", args.name);
    println!("hash = \"{hash}\"");
    println!("scopes = [{list}]");
    println!();
    println!("Clients send it as: Authorization: Bearer <key>");
    Ok(())
}
