//! Who may pass: a pure function from the connection's certificate, the route and the registry's
//! standing (revocations, suspensions, roles) to a permit.

use crate::config::Route;
use crate::identity::{IdentityError, Resolved};
use crate::model::{Role, Serial};
use crate::revocation::Snapshot;

use super::ClientCert;

/// Leave to go on, with the identity to announce (if any).
#[derive(Debug)]
pub(super) struct Permit<'a> {
    /// The verified caller, or `None` on a route that does not need a certificate.
    pub identity: Option<&'a Resolved>,
    /// The caller's role: `admin` for the corporation administrator's certificate, else the
    /// user's role in the registry (`general` for a user it does not know).
    pub role: Role,
    /// RFC 9440 chain header, passed through from the connection.
    pub chain_header: Option<&'a http::HeaderValue>,
    /// Whether the certificate may use certgate's own operations.
    pub lifecycle_ca: bool,
    /// Whether a renewal replaced the certificate: certgate's own pages still answer it, the
    /// application's routes send it to reconnect with the new one.
    pub renewed: bool,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Denied {
    /// The route requires a certificate and none was presented.
    NoCertificate {
        /// The route's prefix.
        route: String,
    },
    /// A certificate was presented but its CN names nobody; refused on every route, because
    /// presenting a certificate outside the bank's layout is not an anonymous visit.
    UnknownIdentity(IdentityError),
    /// The certificate expired after the connection was opened (long keep-alive or resumption).
    Expired {
        /// notAfter as RFC 3339.
        not_after: String,
    },
    /// The certificate is revoked (checked per request, so open connections are cut off too).
    Revoked {
        /// Its serial.
        serial: Serial,
    },
    /// The certificate was renewed: its holder must reconnect with the new one (seed 003: after
    /// renewal the old certificate is logged off).
    Renewed {
        /// Its serial.
        serial: Serial,
    },
    /// The user is suspended by the corporation's master user.
    Suspended {
        /// `corp/user`.
        user: String,
    },
    /// The corporation is not in service.
    CorporationInactive {
        /// The corporation.
        corp_id: String,
    },
    /// The application's ID + PIN login form was posted without a certificate for a
    /// corporation whose users must log in with their certificate.
    LoginNeedsCertificate {
        /// The corporation named in the form.
        corp_id: String,
    },
    /// The login form names another corporation or user than the certificate does.
    LoginMismatch,
}

/// Decides one request.
pub(super) fn authorize<'a>(
    cert: &'a ClientCert,
    route: &Route,
    now_unix: i64,
    standing: &Snapshot,
) -> Result<Permit<'a>, Denied> {
    match cert {
        ClientCert::Verified {
            resolved,
            chain_header,
            lifecycle_ca,
        } => {
            let resolved = resolved
                .as_ref()
                .as_ref()
                .map_err(|err| Denied::UnknownIdentity(err.clone()))?;
            let identity = &resolved.identity;
            if identity.not_after < now_unix {
                return Err(Denied::Expired {
                    not_after: identity.not_after_rfc3339.clone(),
                });
            }
            if standing.is_revoked(identity.issuer, &identity.serial) {
                return Err(Denied::Revoked {
                    serial: identity.serial,
                });
            }
            if standing
                .corporation(identity.corp_key)
                .is_some_and(|corporation| !corporation.active)
            {
                return Err(Denied::CorporationInactive {
                    corp_id: identity.corp_id.clone(),
                });
            }
            let role = match (&identity.user_id, identity.user_key) {
                (Some(user_id), Some(key)) => match standing.user(key) {
                    Some(user) if user.suspended => {
                        return Err(Denied::Suspended {
                            user: format!("{}/{user_id}", identity.corp_id),
                        });
                    }
                    Some(user) => user.role,
                    None => Role::General,
                },
                _ => Role::Admin,
            };
            Ok(Permit {
                identity: Some(resolved),
                role,
                chain_header: chain_header.as_ref(),
                lifecycle_ca: *lifecycle_ca,
                renewed: standing.is_renewed(identity.issuer, &identity.serial),
            })
        }
        ClientCert::Absent if route.require_cert => Err(Denied::NoCertificate {
            route: route.path.clone(),
        }),
        ClientCert::Absent => Ok(Permit {
            identity: None,
            role: Role::General,
            chain_header: None,
            lifecycle_ca: false,
            renewed: false,
        }),
    }
}

/// The login form guard: `identity` is the connection's certificate's (`None` without one),
/// `corp_id`/`user_id` are the form's fields.
pub(super) fn authorize_login(
    identity: Option<&Resolved>,
    corp_id: Option<&str>,
    user_id: Option<&str>,
    standing: &Snapshot,
) -> Result<(), Denied> {
    match identity {
        None => match corp_id {
            Some(corp_id)
                if standing
                    .corporation(crate::model::StandingKey::corporation(corp_id))
                    .is_some_and(|corporation| corporation.cert_required) =>
            {
                Err(Denied::LoginNeedsCertificate {
                    corp_id: corp_id.to_owned(),
                })
            }
            _ => Ok(()),
        },
        Some(resolved) => {
            let identity = &resolved.identity;
            let corp_differs = corp_id.is_some_and(|corp_id| corp_id != identity.corp_id);
            let user_differs =
                user_id.is_some_and(|user_id| identity.user_id.as_deref() != Some(user_id));
            if corp_differs || user_differs {
                Err(Denied::LoginMismatch)
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::identity::{Identity, IdentityHeaders};

    fn route(require_cert: bool) -> Route {
        Route {
            path: "/app".into(),
            require_cert,
        }
    }

    fn verified(user_id: Option<&str>, not_after: i64) -> ClientCert {
        let config =
            Config::parse("[server]\ncert=\"a\"\nkey=\"b\"\nclient_auth=\"none\"").unwrap();
        let identity = Identity {
            corp_id: "12345678901234".into(),
            user_id: user_id.map(str::to_owned),
            role: if user_id.is_some() {
                Role::General
            } else {
                Role::Admin
            },
            serial: Serial::from_canonical_hex("01").unwrap(),
            issuer: crate::model::IssuerKey(1),
            corp_key: crate::model::StandingKey::corporation("12345678901234"),
            user_key: user_id
                .map(|user_id| crate::model::StandingKey::user("12345678901234", user_id)),
            not_after,
            not_after_rfc3339: "t".into(),
            fingerprint: [0; 32],
            subject_dn: String::new(),
            issuer_dn: String::new(),
            dns_names: vec![],
            uris: vec![],
        };
        let headers = IdentityHeaders::render(&identity, b"", &config.headers);
        ClientCert::Verified {
            resolved: Arc::new(Ok(Resolved { identity, headers })),
            chain_header: None,
            lifecycle_ca: true,
        }
    }

    fn nothing() -> Snapshot {
        Snapshot::default()
    }

    #[test]
    fn no_certificate_passes_only_where_none_is_required() {
        assert!(
            authorize(&ClientCert::Absent, &route(false), 0, &nothing())
                .unwrap()
                .identity
                .is_none()
        );
        assert_eq!(
            authorize(&ClientCert::Absent, &route(true), 0, &nothing()).unwrap_err(),
            Denied::NoCertificate {
                route: "/app".into()
            }
        );
    }

    #[test]
    fn verified_certificate_passes_everywhere_until_it_expires() {
        let cert = verified(Some("taro"), 100);
        assert!(
            authorize(&cert, &route(true), 99, &nothing())
                .unwrap()
                .identity
                .is_some()
        );
        assert!(
            authorize(&cert, &route(false), 99, &nothing())
                .unwrap()
                .identity
                .is_some()
        );
        assert!(matches!(
            authorize(&cert, &route(true), 101, &nothing()),
            Err(Denied::Expired { .. })
        ));
    }

    #[test]
    fn revoked_certificate_is_refused_even_on_an_open_route() {
        let cert = verified(Some("taro"), 100);
        let serial = |hex: &str| Serial::from_canonical_hex(hex).unwrap();
        let standing = Snapshot::with_revoked([(crate::model::IssuerKey(1), serial("01"))]);
        assert_eq!(
            authorize(&cert, &route(false), 1, &standing).unwrap_err(),
            Denied::Revoked {
                serial: serial("01")
            }
        );
        let other = Snapshot::with_revoked([(crate::model::IssuerKey(1), serial("02"))]);
        assert!(authorize(&cert, &route(true), 1, &other).is_ok());
    }

    #[test]
    fn unknown_identity_is_refused_even_where_no_certificate_is_needed() {
        let cert = ClientCert::Verified {
            resolved: Arc::new(Err(IdentityError::CommonNameCount { count: 0 })),
            chain_header: None,
            lifecycle_ca: false,
        };
        assert!(matches!(
            authorize(&cert, &route(false), 0, &nothing()),
            Err(Denied::UnknownIdentity(_))
        ));
    }

    #[test]
    fn administrator_certificate_has_the_admin_role_and_unknown_users_are_general() {
        assert_eq!(
            authorize(&verified(None, 100), &route(true), 1, &nothing())
                .unwrap()
                .role,
            Role::Admin
        );
        assert_eq!(
            authorize(&verified(Some("taro"), 100), &route(true), 1, &nothing())
                .unwrap()
                .role,
            Role::General
        );
    }

    #[test]
    fn suspended_user_and_inactive_corporation_are_refused_and_roles_come_from_the_registry() {
        use crate::revocation::{CorporationStanding, UserStanding};
        let cert = verified(Some("taro"), 100);
        let suspended = nothing().with_user(
            "12345678901234",
            "taro",
            UserStanding {
                role: Role::General,
                suspended: true,
            },
        );
        assert!(matches!(
            authorize(&cert, &route(true), 1, &suspended),
            Err(Denied::Suspended { .. })
        ));
        let master = nothing().with_user(
            "12345678901234",
            "taro",
            UserStanding {
                role: Role::Master,
                suspended: false,
            },
        );
        assert_eq!(
            authorize(&cert, &route(true), 1, &master).unwrap().role,
            Role::Master
        );
        let closed = nothing().with_corporation(
            "12345678901234",
            CorporationStanding {
                cert_required: false,
                active: false,
            },
        );
        assert!(matches!(
            authorize(&cert, &route(true), 1, &closed),
            Err(Denied::CorporationInactive { .. })
        ));
    }

    #[test]
    fn login_without_certificate_is_refused_once_the_corporation_requires_them() {
        use crate::revocation::CorporationStanding;
        let anonymous = authorize(&ClientCert::Absent, &route(false), 1, &nothing()).unwrap();
        let required = nothing().with_corporation(
            "12345678901234",
            CorporationStanding {
                cert_required: true,
                active: true,
            },
        );
        assert_eq!(
            authorize_login(
                anonymous.identity,
                Some("12345678901234"),
                Some("taro"),
                &required
            ),
            Err(Denied::LoginNeedsCertificate {
                corp_id: "12345678901234".into()
            })
        );
        let optional = nothing().with_corporation(
            "12345678901234",
            CorporationStanding {
                cert_required: false,
                active: true,
            },
        );
        assert!(
            authorize_login(
                anonymous.identity,
                Some("12345678901234"),
                Some("taro"),
                &optional
            )
            .is_ok()
        );
    }

    #[test]
    fn login_form_must_match_the_certificate() {
        let cert = verified(Some("taro"), 100);
        let permit = authorize(&cert, &route(false), 1, &nothing()).unwrap();
        assert!(
            authorize_login(
                permit.identity,
                Some("12345678901234"),
                Some("taro"),
                &nothing()
            )
            .is_ok()
        );
        assert_eq!(
            authorize_login(
                permit.identity,
                Some("12345678901234"),
                Some("jiro"),
                &nothing()
            ),
            Err(Denied::LoginMismatch)
        );
        assert_eq!(
            authorize_login(
                permit.identity,
                Some("99999999999999"),
                Some("taro"),
                &nothing()
            ),
            Err(Denied::LoginMismatch)
        );
        let anonymous = authorize(&ClientCert::Absent, &route(false), 1, &nothing()).unwrap();
        assert!(
            authorize_login(
                anonymous.identity,
                Some("12345678901234"),
                Some("taro"),
                &nothing()
            )
            .is_ok()
        );
    }
}
