//! `idis-harness read`: associate with a meter, read attributes, print them
//! decoded (object lists as a table, date-times decoded), release.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use idis_harness::client::{AssociateOutcome, Client, GetOutcome};
use idis_harness::profile::Mechanism;
use idis_harness::report::values::{object_list_table, pretty};
use idis_harness::runner::Target;
use idis_harness::runner::case::TargetState;
use idis_harness::session::association::AssociationRequest;
use idis_harness::transport::link::LinkKind;
use idis_harness::transport::open;
use idis_harness::wire::apdu::AttributeDescriptor;
use idis_harness::wire::axdr::Data;
use idis_harness::wire::obis::Obis;

use super::USAGE_ERROR;
use super::out::Out;
use crate::TargetArgs;

#[derive(Args, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Client SAP (default 16, the public client).
    #[arg(long, default_value_t = 16)]
    pub client: u16,
    /// What to read: LN:ATTR (class looked up in the object list), CLASS/LN/ATTR, or LN (attribute 2).
    #[arg(required = true)]
    pub objects: Vec<String>,
}

/// What `read` reads: a class (maybe to look up), a logical name and an attribute.
fn parse_object(s: &str) -> Result<(Option<u16>, Obis, i8), String> {
    let bad = || {
        format!(
            "`{s}`: write LN:ATTR (e.g. 0-0:42.0.0.255:2), CLASS/LN/ATTR (e.g. 1/0-0:42.0.0.255/2) or LN"
        )
    };
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() == 3 {
        let class = parts[0].parse().map_err(|_| bad())?;
        let obis = parts[1].parse().map_err(|_| bad())?;
        let attr = parts[2].parse().map_err(|_| bad())?;
        return Ok((Some(class), obis, attr));
    }
    if let Ok(obis) = s.parse::<Obis>() {
        return Ok((None, obis, 2));
    }
    let (ln, attr) = s.rsplit_once(':').ok_or_else(bad)?;
    Ok((
        None,
        ln.parse().map_err(|_| bad())?,
        attr.parse().map_err(|_| bad())?,
    ))
}

/// The line `read` prints to stderr first: which target, and why that one.
fn announce(args: &TargetArgs, t: &Target) -> String {
    let why = if !args.targets.is_empty() {
        String::new()
    } else if t.info.name == "sim" && t.state.original.target.is_none() {
        "; no --target given".into()
    } else {
        format!("; the target of the device profile {}", t.info.profile)
    };
    format!("reading {} ({}{why})", t.info.name, t.info.transport)
}

pub async fn cmd_read(a: ReadArgs) -> ExitCode {
    let objects: Vec<_> = match a
        .objects
        .iter()
        .map(|o| parse_object(o))
        .collect::<Result<_, _>>()
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let mut targets = match crate::build_targets(&a.target, false, None) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    if targets.len() != 1 {
        eprintln!("error: read takes one target");
        return ExitCode::from(USAGE_ERROR);
    }
    let target = targets.remove(0);
    eprintln!("{}", announce(&a.target, &target));
    let mut out = Out::new();
    let r = read(&target.state, a.client, &objects, &mut out).await;
    let printed = super::finish(out);
    match r {
        Ok(()) => printed,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn read(
    t: &TargetState,
    sap: u16,
    objects: &[(Option<u16>, Obis, i8)],
    out: &mut Out,
) -> Result<(), String> {
    let start = Instant::now();
    let pc = t.profile.client(sap).cloned().ok_or_else(|| {
        format!(
            "client {sap} is not in the device profile `{}`",
            t.profile.name
        )
    })?;
    let kind = open::native_kind(&t.spec).unwrap_or(LinkKind::Wrapper);
    let ciphered = pc.protection.is_ciphered() || pc.mechanism == Mechanism::HlsGmac;
    // A ciphered client continues from the meter's counter object (read as the public client).
    let ic = if ciphered {
        let public = t
            .profile
            .client(16)
            .cloned()
            .ok_or("step 1 (counter sync): the profile has no public client (16)")?;
        let mut c = connect(t, 16, kind, start, "step 1 (counter sync)").await?;
        associate(
            &mut c,
            AssociationRequest::from_profile(&public, vec![], 0),
            "step 1 (counter sync)",
        )
        .await?;
        let v = match c
            .get(AttributeDescriptor {
                class_id: 1,
                instance: pc.counter_object,
                attribute_id: 2,
            })
            .await
            .map_err(|e| format!("step 1 (counter sync): reading {}: {e}", pc.counter_object))?
        {
            GetOutcome::Data(d) => d
                .as_integer()
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(0),
            other => {
                return Err(format!(
                    "step 1 (counter sync): reading {}: {other}",
                    pc.counter_object
                ));
            }
        };
        let _ = c.release(false).await;
        close(c).await;
        eprintln!(
            "invocation counter of client {sap}: {v} (continuing at {})",
            v.saturating_add(1)
        );
        v.saturating_add(1)
    } else {
        0
    };
    let mut c = connect(t, sap, kind, start, "step 2 (link)").await?;
    let mut challenge = vec![0u8; 16];
    let _ = getrandom::fill(&mut challenge);
    associate(
        &mut c,
        AssociationRequest::from_profile(&pc, challenge, ic),
        &format!(
            "step 3 (associate as client {sap}, {})",
            pc.mechanism.name()
        ),
    )
    .await?;
    let mut object_list: Option<Vec<Data>> = None;
    let mut failed = 0;
    for (class, obis, attr) in objects {
        let class = match class {
            Some(c) => *c,
            None => {
                if object_list.is_none() {
                    let r = c
                        .get(AttributeDescriptor {
                            class_id: 15,
                            instance: Obis::CURRENT_ASSOCIATION,
                            attribute_id: 2,
                        })
                        .await
                        .map_err(|e| format!("step 4 (object list): {e}"))?;
                    object_list = match r {
                        GetOutcome::Data(Data::Array(v)) => Some(v),
                        other => {
                            return Err(format!(
                                "step 4 (object list, to find the class of {obis}): {other}; give CLASS/LN/ATTR instead"
                            ));
                        }
                    };
                }
                find_class(object_list.as_deref().unwrap_or_default(), obis)
                    .ok_or_else(|| format!("{obis} is not in the object list of client {sap}"))?
            }
        };
        let r = c
            .get(AttributeDescriptor {
                class_id: class,
                instance: *obis,
                attribute_id: *attr,
            })
            .await
            .map_err(|e| format!("step 5 (get {class}/{obis}/{attr}): {e}"))?;
        let what = format!("{class}/{obis}/{attr}");
        match r {
            GetOutcome::Data(d) => out.line(format!("{what}: {}", show(class, *attr, &d))),
            other => {
                failed += 1;
                out.line(format!("{what}: {other}"));
            }
        }
    }
    let _ = c
        .release(c.assoc.as_ref().is_some_and(|a| a.ciphered()))
        .await;
    close(c).await;
    if failed > 0 {
        Err(format!("{failed} of {} read(s) refused", objects.len()))
    } else {
        Ok(())
    }
}

/// A value as `read` prints it: an object list (class 15 attribute 2) as a
/// table, anything else decoded, long structures one element a line.
fn show(class: u16, attr: i8, d: &Data) -> String {
    match (class, attr, d) {
        (15, 2, Data::Array(items)) => {
            format!("object list\n{}", object_list_table(items).trim_end())
        }
        _ => pretty(d, 0),
    }
}

fn find_class(list: &[Data], obis: &Obis) -> Option<u16> {
    list.iter().find_map(|e| match e.items()? {
        [Data::LongUnsigned(class), _, Data::OctetString(ln), ..] if ln.as_slice() == obis.0 => {
            Some(*class)
        }
        _ => None,
    })
}

async fn connect(
    t: &TargetState,
    sap: u16,
    kind: LinkKind,
    start: Instant,
    step: &str,
) -> Result<Client, String> {
    let mut link = open::open(&t.spec, &t.profile, sap, Some(kind), t.sim.as_ref(), start)
        .await
        .map_err(|e| format!("{step}: {e}"))?;
    if link.kind() == LinkKind::Hdlc {
        link.connect()
            .await
            .map_err(|e| format!("{step}: HDLC connect: {e}"))?;
    }
    Ok(Client::new(link))
}

async fn associate(c: &mut Client, req: AssociationRequest, step: &str) -> Result<(), String> {
    match c
        .associate(req, false)
        .await
        .map_err(|e| format!("{step}: {e}"))?
    {
        AssociateOutcome::Associated => Ok(()),
        AssociateOutcome::Refused(r) => Err(format!("{step}: refused: {r}")),
    }
}

async fn close(mut c: Client) {
    if c.link.kind() == LinkKind::Hdlc {
        let _ = c.link.disconnect().await;
    }
    c.link.shutdown().await;
}
