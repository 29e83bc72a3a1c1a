//! Who may touch what: apps, plans and the tenant rule of the contract (§3).

use super::events::{Actor, ActorKind};
use super::values::{OrgId, TeamId};

/// An org's subscription plan. Each plan includes the features of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plan {
    /// No API access at all.
    Free,
    /// The contacts directory and third-party users.
    Business,
    /// Also the org endpoints.
    Flagship,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Business => "business",
            Plan::Flagship => "flagship",
        }
    }

    pub fn parse(raw: &str) -> Option<Plan> {
        match raw {
            "free" => Some(Plan::Free),
            "business" => Some(Plan::Business),
            "flagship" => Some(Plan::Flagship),
            _ => None,
        }
    }
}

/// What an app is allowed to be: bound to one org, or a platform that creates orgs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppScope {
    /// May touch this one org and its directory, within the org's plan.
    Team(OrgId),
    /// May create orgs and touch the orgs it created; not limited by plan.
    Platform,
}

/// The app behind a verified token, and the request it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub appid: String,
    pub scope: AppScope,
    /// The HTTP request's id (§2), stored with the events of the changes it makes.
    pub request_id: Option<String>,
}

/// The facts about an org that access decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccess {
    pub org_id: OrgId,
    pub team_id: TeamId,
    pub plan: Plan,
    /// The platform app that created the org, if one did.
    pub creator_appid: Option<String>,
}

/// Why an app may not do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The app may not touch this org or team (or it does not exist and the app may not know).
    Claim,
    /// The org's plan lacks the feature.
    Subscription,
}

impl Caller {
    /// The caller as the actor of a change of kind `kind` (`app`, or `sync` for a sync).
    pub fn actor(&self, kind: ActorKind) -> Actor {
        Actor {
            kind,
            appid: Some(self.appid.clone()),
            request_id: self.request_id.clone(),
        }
    }

    /// The tenant rule: may this app touch that org, and does the org's plan include `needed`?
    /// A team app is checked against its own org only, so it learns nothing about other orgs.
    pub fn may_touch(&self, org: &OrgAccess, needed: Plan) -> Result<(), Denied> {
        match self.scope {
            AppScope::Team(own) if own == org.org_id => {
                if org.plan >= needed {
                    Ok(())
                } else {
                    Err(Denied::Subscription)
                }
            }
            AppScope::Team(_) => Err(Denied::Claim),
            AppScope::Platform => {
                if org.creator_appid.as_deref() == Some(self.appid.as_str()) {
                    Ok(())
                } else {
                    Err(Denied::Claim)
                }
            }
        }
    }

    pub fn is_platform(&self) -> bool {
        self.scope == AppScope::Platform
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::values::{OrgId, TeamId};

    fn org(plan: Plan, creator: Option<&str>) -> OrgAccess {
        OrgAccess {
            org_id: OrgId::new(7),
            team_id: TeamId::new(1),
            plan,
            creator_appid: creator.map(str::to_owned),
        }
    }

    #[test]
    fn team_apps_touch_their_own_org_within_its_plan() {
        let app = Caller {
            appid: "a".into(),
            scope: AppScope::Team(OrgId::new(7)),
            request_id: None,
        };
        assert_eq!(
            app.may_touch(&org(Plan::Business, None), Plan::Business),
            Ok(())
        );
        assert_eq!(
            app.may_touch(&org(Plan::Business, None), Plan::Flagship),
            Err(Denied::Subscription)
        );
        let other = Caller {
            appid: "a".into(),
            scope: AppScope::Team(OrgId::new(8)),
            request_id: None,
        };
        assert_eq!(
            other.may_touch(&org(Plan::Flagship, None), Plan::Business),
            Err(Denied::Claim)
        );
    }

    #[test]
    fn platform_apps_touch_the_orgs_they_created_whatever_the_plan() {
        let app = Caller {
            appid: "p".into(),
            scope: AppScope::Platform,
            request_id: None,
        };
        assert_eq!(
            app.may_touch(&org(Plan::Free, Some("p")), Plan::Flagship),
            Ok(())
        );
        assert_eq!(
            app.may_touch(&org(Plan::Flagship, Some("q")), Plan::Business),
            Err(Denied::Claim)
        );
    }
}
