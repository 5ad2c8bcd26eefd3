//! `ferryctl token create|list|revoke`: a tenant's API tokens, by name.

use super::PageArgs;
use clap::Subcommand;
use ferry_shared::{TenantName, TokenName, TokenRole};

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an API token scoped to a tenant; the secret is shown once.
    Create {
        #[arg(long, value_name = "T")]
        tenant: TenantName,
        /// The name it is listed and revoked by (unique in the tenant; default its id).
        #[arg(long, value_name = "NAME")]
        name: Option<TokenName>,
        /// read (GET routes), deliver (read + refresh, rotations, metadata writes,
        /// certificate imports) or admin (everything the tenant can; the default).
        #[arg(long, value_name = "ROLE")]
        role: Option<TokenRole>,
        /// Lifetime, e.g. 90s, 30m, 24h, 7d (default: it never expires).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires_in: Option<u64>,
        /// Who or what holds the token (shown in the audit log).
        #[arg(long, value_name = "D")]
        description: Option<String>,
    },
    /// List a tenant's tokens (names, roles, expiry; never secrets).
    List {
        #[arg(long, value_name = "T")]
        tenant: TenantName,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke a tenant's token by name: refused from the next request on.
    Revoke {
        #[arg(long, value_name = "T")]
        tenant: TenantName,
        name: TokenName,
    },
}

/// Seconds of `<n>[s|m|h|d]` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 24h or 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(unit)
        .filter(|&secs| secs > 0)
        .ok_or_else(|| format!("{s:?} is not a positive duration"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    #[test]
    fn durations_take_a_unit_and_must_be_positive() {
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        for bad in ["", "0s", "h", "5w", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn create_takes_role_name_and_expiry() {
        let cli = Cli::try_parse_from([
            "ferryctl",
            "token",
            "create",
            "--tenant",
            "acme",
            "--role",
            "deliver",
            "--expires-in",
            "24h",
            "--name",
            "ci",
        ])
        .expect("valid command line");
        let Command::Token(TokenCmd::Create {
            role,
            expires_in,
            name,
            ..
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(role, Some(TokenRole::Deliver));
        assert_eq!(expires_in, Some(86_400));
        assert_eq!(name.as_ref().map(|n| n.as_str()), Some("ci"));
        let bad_role = Cli::try_parse_from([
            "ferryctl", "token", "create", "--tenant", "acme", "--role", "owner",
        ]);
        assert_eq!(bad_role.expect_err("unknown role").exit_code(), 2);
    }
}
