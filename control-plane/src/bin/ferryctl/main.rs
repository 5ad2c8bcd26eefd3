//! `ferryctl`: the command-line client of the Ferry customer and admin API.
//!
//! Talks HTTPS + JSON to the control plane through `ferry_shared` types only; it never
//! links the control-plane library. Exit codes: 0 success, 1 the server refused or
//! could not be reached, or a delivery or rotation awaited with `--wait` did not
//! succeed, 2 usage errors. Every failure is one `error: ...` line on stderr, with the
//! API token redacted.
#![forbid(unsafe_code)]

mod args;
mod client;
mod commands;
mod data;
mod delivery;
mod error;
mod fleet;
mod ops;
mod output;
mod progress;
mod sources;
mod tokens;
mod trust;
mod views;
mod watch;
mod webhook;

use args::{Cli, GlobalOpts};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use error::{CliError, EXIT_FAILED, EXIT_USAGE, redact};
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Err only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let argv: Vec<OsString> = std::env::args_os().collect();
    let (cli, flag_wins) = match parse(&argv) {
        Ok(parsed) => parsed,
        Err(e) => return clap_exit(&e, &tokens_in_argv(&argv)),
    };

    let mut secrets: Vec<String> = cli.global.token.iter().cloned().collect();
    let result = match resolve_token(&cli, flag_wins) {
        Ok(token) => {
            secrets.extend(token.clone());
            run(&cli, token.as_deref())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(out) => {
            for note in &out.notes {
                eprintln!("{}", redact(note, &secrets));
            }
            let written = write_stdout(&out.stdout);
            match out.failure {
                Some(e) => {
                    eprintln!("{}", redact(&e.line(), &secrets));
                    ExitCode::from(e.exit_code())
                }
                None => written,
            }
        }
        Err(e) => {
            eprintln!("{}", redact(&e.line(), &secrets));
            ExitCode::from(e.exit_code())
        }
    }
}

/// The parsed command line, and whether `--token` was typed while `--token-file` was
/// not: a flag on the command line beats a setting inherited from the environment.
fn parse(argv: &[OsString]) -> Result<(Cli, bool), clap::Error> {
    let matches: ArgMatches = Cli::command().try_get_matches_from(argv)?;
    let typed = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let flag_wins = typed("token") && !typed("token_file");
    Ok((Cli::from_arg_matches(&matches)?, flag_wins))
}

fn run(cli: &Cli, token: Option<&str>) -> Result<commands::Output, CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(commands::run(cli, token))
}

/// The API token, read only for commands that send it: `--token` when `flag_wins`,
/// otherwise the token file when one is set, otherwise `--token` / `FERRY_TOKEN`.
fn resolve_token(cli: &Cli, flag_wins: bool) -> Result<Option<String>, CliError> {
    if !cli.command.needs_token() {
        return Ok(None);
    }
    token_from(&cli.global, flag_wins)
}

fn token_from(opts: &GlobalOpts, flag_wins: bool) -> Result<Option<String>, CliError> {
    let flag = opts.token.clone().filter(|t| !t.trim().is_empty());
    let path = match &opts.token_file {
        Some(path) if !(flag_wins && flag.is_some()) => path,
        _ => return Ok(flag),
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read token file {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CliError::Usage(format!(
            "token file {} is empty",
            path.display()
        )));
    }
    Ok(Some(token.to_owned()))
}

/// Token values on a command line clap refused, so its message cannot echo them.
fn tokens_in_argv(argv: &[OsString]) -> Vec<String> {
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut found: Vec<String> = std::env::var("FERRY_TOKEN").into_iter().collect();
    for (i, arg) in args.iter().enumerate() {
        if arg == "--token" {
            found.extend(args.get(i + 1).cloned());
        } else if let Some(value) = arg.strip_prefix("--token=") {
            found.push(value.to_owned());
        }
    }
    found
}

/// Prints clap's message (help and version on stdout, errors on stderr) and exits with
/// its code: 0 for help and version, 2 for usage errors.
fn clap_exit(e: &clap::Error, secrets: &[String]) -> ExitCode {
    let text = redact(&e.render().to_string(), secrets);
    if e.use_stderr() {
        eprint!("{text}");
    } else {
        // Help and version; a closed pipe here is not worth reporting.
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
    match u8::try_from(e.exit_code()) {
        Ok(code) => ExitCode::from(code),
        Err(_) => ExitCode::from(EXIT_USAGE),
    }
}

/// Writes the result; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write output: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("ferryctl")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn token_values_in_a_refused_command_line_are_redacted() {
        let line = argv(&["--token", "--sekrit-1", "service", "list"]);
        let err = parse(&line).expect_err("refused");
        let secrets = tokens_in_argv(&line);
        assert!(secrets.contains(&"--sekrit-1".to_owned()));
        let text = redact(&err.render().to_string(), &secrets);
        assert!(!text.contains("sekrit"), "{text}");

        let eq = tokens_in_argv(&argv(&["--token=abc", "x"]));
        assert!(eq.contains(&"abc".to_owned()));
    }

    #[test]
    fn token_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin-token");
        std::fs::write(&path, "  fy_from_file\n").expect("write token");
        let path_arg = path.to_string_lossy().into_owned();
        let (cli, flag_wins) = parse(&argv(&[
            "--token",
            "fy_flag",
            "--token-file",
            &path_arg,
            "service",
            "list",
        ]))
        .expect("valid");
        assert!(!flag_wins);
        assert_eq!(
            resolve_token(&cli, flag_wins).expect("readable").as_deref(),
            Some("fy_from_file")
        );

        // A typed --token beats a token file that only came from the environment.
        assert_eq!(
            resolve_token(&cli, true).expect("flag").as_deref(),
            Some("fy_flag")
        );
        let (_, flag_wins) =
            parse(&argv(&["service", "list", "--token", "fy_flag"])).expect("valid");
        assert!(
            flag_wins,
            "a global flag after the subcommand counts as typed"
        );

        std::fs::write(&path, "\n").expect("write token");
        let err = resolve_token(&cli, false).expect_err("empty file accepted");
        assert_eq!(err.exit_code(), 2);

        let missing = dir.path().join("nope").to_string_lossy().into_owned();
        let (cli, _) = parse(&argv(&["--token-file", &missing, "trust-bundle"])).expect("valid");
        assert_eq!(resolve_token(&cli, false).expect("not needed"), None);
    }
}
