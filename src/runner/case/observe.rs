//! What the device did, as an observation: from a link failure or a decoded reply APDU.

use crate::runner::outcome::Observed;
use crate::transport::link::LinkError;
use crate::wire::apdu::{ActionResponse, Apdu, GetDataResult, GetResponse, SetResponse};

/// Maps a link failure during a step to what the device did.
pub(super) fn observed_from_link(e: &LinkError) -> Option<Observed> {
    match e {
        LinkError::Timeout(_) => Some(Observed::Silence),
        LinkError::Closed => Some(Observed::Disconnect),
        LinkError::Garbled(why) => Some(Observed::Other(format!("garbled reply: {why}"))),
        LinkError::Hdlc(why) => Some(Observed::Other(format!("HDLC: {why}"))),
        LinkError::Stalled { .. } => Some(Observed::Other(e.to_string())),
        LinkError::Connect(_) | LinkError::Refused(_) | LinkError::Io(_) | LinkError::Usage(_) => {
            None
        }
    }
}

/// Maps a decoded reply APDU to an observation.
pub(super) fn observed_from_apdu(apdu: &Apdu) -> Observed {
    match apdu {
        Apdu::GetResponse(GetResponse::Normal { result, .. }) => match result {
            GetDataResult::Data(d) => Observed::Data(d.clone()),
            GetDataResult::Error(e) => Observed::Access(*e),
        },
        Apdu::SetResponse(SetResponse::Normal { result, .. }) => Observed::Access(*result),
        Apdu::ActionResponse(ActionResponse::Normal { response, .. }) => Observed::Action(
            response.result,
            match &response.return_parameters {
                Some(GetDataResult::Data(d)) => Some(d.clone()),
                _ => None,
            },
        ),
        Apdu::ExceptionResponse(e) => Observed::Exception {
            state: e.state_error,
            service: e.service_error,
            counter: e.invocation_counter,
        },
        Apdu::Rlre(_) => Observed::Released,
        // A confirmed-service-error of the initiate service (Gurux answers a
        // GET without an association this way).
        Apdu::ConfirmedServiceError(e) if e.service == 1 => Observed::InitiateError(e.value),
        Apdu::Aare(a) if a.result != 0 => Observed::Rejected {
            result: a.result,
            diagnostic: a.diagnostic,
            initiate_error: None,
        },
        other => Observed::Other(other.to_string()),
    }
}
