//! `contactsd admin ...`: the operator's commands on orgs, apps, quotas, SCIM tokens and checks.

use anyhow::{Context, Result, bail};
use chrono::{Offset, Utc};
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use crate::domain::access::Plan;
use crate::domain::values::{self, EventSeq, OrgId, TeamId};
use crate::http::EventData;
use crate::service::{Service, ServiceError};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum PlanArg {
    Free,
    Business,
    Flagship,
}

impl From<PlanArg> for Plan {
    fn from(plan: PlanArg) -> Plan {
        match plan {
            PlanArg::Free => Plan::Free,
            PlanArg::Business => Plan::Business,
            PlanArg::Flagship => Plan::Flagship,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum AdminCommand {
    /// Create an org, its contacts directory and a team app for it.
    CreateOrg {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "business")]
        plan: PlanArg,
        /// Admin seats (members with role 2 or 3) the org may fill.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
        admin_seats: i64,
    },
    /// Create a platform app, which may create orgs through the API.
    CreatePlatformApp {
        #[arg(long)]
        name: String,
    },
    /// Give an app a new secret; the old secret and the app's current token stop working.
    RotateSecret {
        #[arg(long)]
        appid: String,
    },
    /// Change one org's quotas (`--org-id` with `--max-groups` and/or `--max-members`) or how
    /// many orgs one platform app may create (`--appid` with `--max-orgs`); what is not given
    /// keeps its stored value or the server's default.
    SetQuota {
        #[arg(long, conflicts_with = "appid", required_unless_present = "appid")]
        org_id: Option<OrgId>,
        #[arg(long, requires = "org_id", value_parser = clap::value_parser!(i64).range(0..))]
        max_groups: Option<i64>,
        #[arg(long, requires = "org_id", value_parser = clap::value_parser!(i64).range(0..))]
        max_members: Option<i64>,
        #[arg(long, requires = "max_orgs")]
        appid: Option<String>,
        #[arg(long, requires = "appid", value_parser = clap::value_parser!(i64).range(0..))]
        max_orgs: Option<i64>,
    },
    /// SCIM provisioning tokens of a directory (§12).
    ScimToken {
        #[command(subcommand)]
        command: ScimTokenCommand,
    },
    /// The change feed of a directory, oldest first: the audit trail of who changed what and
    /// when (see docs/EVENTS.md). Times are UTC.
    Events {
        #[arg(long)]
        team_id: TeamId,
        /// Events numbered after this one (the `next` of the previous page).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
        after: i64,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Check every invariant of every stored directory; exits non-zero on any violation.
    Check {
        /// Maximum depth of the group tree.
        #[arg(long, env = "CONTACTSD_MAX_GROUP_DEPTH", default_value_t = 15)]
        max_group_depth: u32,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ScimTokenCommand {
    /// A new bearer token for the directory (shown once).
    Create {
        #[arg(long)]
        team_id: TeamId,
    },
    /// The directory's tokens (ids and creation times, never the tokens).
    List {
        #[arg(long)]
        team_id: TeamId,
    },
    /// Revoke a token at once.
    Revoke {
        #[arg(long)]
        id: i64,
    },
}

async fn scim_token(service: &Service, command: ScimTokenCommand) -> Result<serde_json::Value> {
    let record = |t: crate::store::scim::ScimTokenRecord| json!({"id": t.id, "team_id": t.team_id, "created_at": t.created_at});
    match command {
        ScimTokenCommand::Create { team_id } => {
            let token = service
                .create_scim_token(team_id)
                .await
                .context("cannot create the token")?;
            Ok(json!({"id": token.id, "team_id": token.team_id, "token": token.token}))
        }
        ScimTokenCommand::List { team_id } => {
            let tokens = service
                .scim_tokens(team_id)
                .await
                .context("cannot list the tokens")?;
            Ok(json!({"list": tokens.into_iter().map(record).collect::<Vec<_>>()}))
        }
        ScimTokenCommand::Revoke { id } => match service.revoke_scim_token(id).await {
            Ok(Some(token)) => Ok(record(token)),
            Ok(None) => bail!("no SCIM token with id {id}"),
            Err(e) => Err(e).context("cannot revoke the token"),
        },
    }
}

pub(super) async fn admin(service: &Service, command: AdminCommand) -> Result<serde_json::Value> {
    match command {
        AdminCommand::CreateOrg {
            name,
            plan,
            admin_seats,
        } => {
            let name = values::OrgName::parse(&name)?;
            let (org, app) = service
                .create_org_with_app(&name, plan.into(), admin_seats)
                .await
                .context("cannot create the org")?;
            Ok(json!({
                "org_id": org.org_id,
                "team_id": org.team_id,
                "appid": app.appid,
                "secret": app.secret,
            }))
        }
        AdminCommand::CreatePlatformApp { name } => {
            let name = values::OrgName::parse(&name)?;
            let app = service
                .create_platform_app(&name)
                .await
                .context("cannot create the platform app")?;
            Ok(json!({"appid": app.appid, "secret": app.secret}))
        }
        AdminCommand::RotateSecret { appid } => {
            let app = match service.rotate_secret(&appid).await {
                Err(ServiceError::InvalidCredential) => bail!("no app with appid {appid:?}"),
                other => other.context("cannot rotate the secret")?,
            };
            Ok(json!({"appid": app.appid, "secret": app.secret}))
        }
        AdminCommand::SetQuota {
            org_id,
            max_groups,
            max_members,
            appid,
            max_orgs,
        } => match (org_id, appid, max_orgs) {
            (Some(org_id), _, _) => {
                let quota = match service.set_org_quota(org_id, max_groups, max_members).await {
                    Err(ServiceError::OrgNotFound) => bail!("no org {org_id}"),
                    other => other.context("cannot set the quota")?,
                };
                // null: the server's default (its --max-groups-per-team, --max-members-per-team).
                Ok(json!({
                    "org_id": org_id,
                    "max_groups": quota.max_groups,
                    "max_members": quota.max_members,
                }))
            }
            (None, Some(appid), Some(max_orgs)) => {
                match service.set_app_org_quota(&appid, max_orgs).await {
                    Err(ServiceError::InvalidCredential) => {
                        bail!("no platform app with appid {appid:?}")
                    }
                    other => other.context("cannot set the quota")?,
                }
                Ok(json!({"appid": appid, "max_orgs": max_orgs}))
            }
            _ => bail!("give --org-id, or --appid with --max-orgs"),
        },
        AdminCommand::ScimToken { command } => scim_token(service, command).await,
        AdminCommand::Events {
            team_id,
            after,
            limit,
        } => {
            let feed = match service
                .audit_events(team_id, EventSeq::new(after), limit)
                .await
            {
                Err(ServiceError::TeamNotFound) => bail!("no team {team_id}"),
                other => other.context("cannot read the events")?,
            };
            let events = feed
                .events
                .into_iter()
                .map(|event| EventData::new(event, Utc.fix()))
                .collect::<Result<Vec<_>, _>>()
                .context("a stored event does not read")?;
            Ok(json!({"team_id": team_id, "events": events, "next": feed.next}))
        }
        AdminCommand::Check { .. } => {
            let checks = service
                .check_directories()
                .await
                .context("cannot check the directories")?;
            let broken: Vec<_> = checks
                .iter()
                .filter(|check| !check.violations.is_empty())
                .map(|check| json!({"team_id": check.team_id, "violations": check.violations}))
                .collect();
            let dangling = service
                .check_references()
                .await
                .context("cannot check the stored references")?;
            let report = json!({
                "teams_checked": checks.len(),
                "groups": checks.iter().map(|c| c.groups).sum::<usize>(),
                "members": checks.iter().map(|c| c.members).sum::<usize>(),
                "violations": broken,
                "dangling_references": dangling,
            });
            if broken.is_empty() && dangling.is_empty() {
                Ok(report)
            } else {
                bail!("invariants are violated:\n{report:#}")
            }
        }
    }
}
