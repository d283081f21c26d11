//! The client association against the simulated meter, in memory: the two
//! sides of the session layer checked against each other.

use crate::profile::{ClientProfile, Mechanism, Protection};
use crate::security::{Key, wrap_key};
use crate::session::association::{
    self, AareOutcome, Associated, AssociationRequest, HlsOutcome, Refusal,
};
use crate::sim::{Connection, Meter, MeterConfig, Quirk, Quirks};
use crate::wire::apdu::{
    ActionRequest, ActionResponse, ActionResult, Apdu, AttributeDescriptor, ExceptionResponse,
    GetDataResult, GetRequest, GetResponse, MethodDescriptor,
};
use crate::wire::axdr::Data;
use crate::wire::obis::Obis;

const NOW: i64 = 1_795_289_234;

struct Rig {
    meter: Meter,
    conn: Connection,
}

impl Rig {
    fn new(quirks: &[Quirk]) -> Self {
        let mut q = Quirks::none();
        for x in quirks {
            q.insert(*x);
        }
        Rig {
            meter: Meter::new(MeterConfig::default(), q),
            conn: Connection::new(1),
        }
    }

    fn exchange(&mut self, sap: u16, req: &[u8]) -> Option<Vec<u8>> {
        let r = self.meter.handle(&mut self.conn, sap, req, NOW);
        self.meter.after_response(&mut self.conn);
        r
    }

    fn associate_req(&mut self, req: AssociationRequest) -> Result<Associated, Refusal> {
        let sap = req.client_sap;
        let (expect, aarq) = association::start(req).unwrap();
        let aare = self.exchange(sap, &aarq.encode()).unwrap();
        match expect.handle(&aare).unwrap() {
            AareOutcome::Associated(a) => Ok(a),
            AareOutcome::Refused(r) => Err(r),
            AareOutcome::Pass3 { next, request } => {
                let reply = self.exchange(sap, &request).unwrap();
                match next.handle(&reply).unwrap() {
                    HlsOutcome::Associated(a) => Ok(a),
                    HlsOutcome::Refused(r, _) => Err(r),
                }
            }
        }
    }

    fn associate(&mut self, c: &ClientProfile, ic: u32) -> Associated {
        self.associate_req(AssociationRequest::from_profile(
            c,
            b"0123456789ABCDEF".to_vec(),
            ic,
        ))
        .unwrap()
    }

    fn get(&mut self, a: &mut Associated, class: u16, obis: Obis, attr: i8) -> Apdu {
        let req = Apdu::GetRequest(GetRequest::Normal {
            invoke_id: a.next_invoke_id(),
            attribute: AttributeDescriptor {
                class_id: class,
                instance: obis,
                attribute_id: attr,
            },
            access: None,
        });
        let bytes = a.wrap(&req.encode()).unwrap();
        let resp = self.exchange(a.client_sap, &bytes).unwrap();
        a.unwrap(&resp).unwrap().apdu
    }
}

fn value(apdu: &Apdu) -> &Data {
    match apdu {
        Apdu::GetResponse(GetResponse::Normal {
            result: GetDataResult::Data(d),
            ..
        }) => d,
        other => panic!("expected data, got {other}"),
    }
}

#[test]
fn public_client_reads_the_logical_device_name() {
    let mut rig = Rig::new(&[]);
    let mut a = rig.associate(&ClientProfile::public(), 0);
    let r = rig.get(&mut a, 1, Obis::LOGICAL_DEVICE_NAME, 2);
    assert_eq!(value(&r), &Data::OctetString(b"MMM0000012345678".to_vec()));
}

#[test]
fn management_client_associates_with_hls_gmac_and_reads_the_clock_ciphered() {
    for ciphering in [
        crate::profile::Ciphering::ServiceSpecific,
        crate::profile::Ciphering::General,
    ] {
        let mut rig = Rig::new(&[]);
        let mut c = ClientProfile::management();
        c.ciphering = ciphering;
        let mut a = rig.associate(&c, 1);
        assert!(a.authenticated);
        let r = rig.get(&mut a, 8, Obis::CLOCK, 2);
        assert!(matches!(value(&r), Data::OctetString(v) if v.len() == 12));
    }
}

#[test]
fn replayed_request_gets_invocation_counter_error_with_the_expected_value() {
    let mut rig = Rig::new(&[]);
    let mut a = rig.associate(&ClientProfile::management(), 1);
    let req = Apdu::GetRequest(GetRequest::Normal {
        invoke_id: 0xC1,
        attribute: AttributeDescriptor {
            class_id: 8,
            instance: Obis::CLOCK,
            attribute_id: 2,
        },
        access: None,
    });
    let bytes = a.wrap(&req.encode()).unwrap();
    let ic = a.cipher.as_ref().unwrap().next_ic - 1;
    assert!(rig.exchange(1, &bytes).is_some());
    let again = rig.exchange(1, &bytes).unwrap();
    assert_eq!(
        Apdu::decode(&again).unwrap(),
        Apdu::ExceptionResponse(ExceptionResponse {
            state_error: 1,
            service_error: 6,
            invocation_counter: Some(ic + 1)
        })
    );
    // With the quirk, the replay is served.
    let mut rig = Rig::new(&[Quirk::AcceptsReplayedCounter]);
    let mut a = rig.associate(&ClientProfile::management(), 1);
    let bytes = a.wrap(&req.encode()).unwrap();
    rig.exchange(1, &bytes);
    let again = rig.exchange(1, &bytes).unwrap();
    assert!(!matches!(
        Apdu::decode(&again).unwrap(),
        Apdu::ExceptionResponse(_)
    ));
}

#[test]
fn counter_reused_after_reassociation_is_rejected() {
    let mut rig = Rig::new(&[]);
    let mut a = rig.associate(&ClientProfile::management(), 1);
    rig.get(&mut a, 8, Obis::CLOCK, 2);
    // A new association starting at counter 1 again: its glo-initiate is a replay.
    let (expect, aarq) = association::start(AssociationRequest::from_profile(
        &ClientProfile::management(),
        b"0123456789ABCDEF".to_vec(),
        1,
    ))
    .unwrap();
    let reply = rig.exchange(1, &aarq.encode()).unwrap();
    match expect.handle(&reply).unwrap() {
        AareOutcome::Refused(Refusal::Exception(e)) => assert_eq!(e.service_error, 6),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_hls_reply_is_refused_and_leaves_the_association_unusable() {
    let mut rig = Rig::new(&[]);
    let mut req = AssociationRequest::from_profile(
        &ClientProfile::management(),
        b"0123456789ABCDEF".to_vec(),
        1,
    );
    req.wrong_challenge_reply = true;
    let (expect, aarq) = association::start(req).unwrap();
    let aare = rig.exchange(1, &aarq.encode()).unwrap();
    let AareOutcome::Pass3 { next, request } = expect.handle(&aare).unwrap() else {
        panic!()
    };
    let reply = rig.exchange(1, &request).unwrap();
    let HlsOutcome::Refused(Refusal::Pass3Refused(r), mut a) = next.handle(&reply).unwrap() else {
        panic!()
    };
    assert_eq!(r, ActionResult::ReadWriteDenied);
    let resp = rig.get(&mut a, 8, Obis::CLOCK, 2);
    assert!(matches!(resp, Apdu::ExceptionResponse(_)), "{resp}");
}

#[test]
fn pass_3_and_4_are_given_unprotected_for_the_trace() {
    let mut rig = Rig::new(&[]);
    let mut req = AssociationRequest::from_profile(
        &ClientProfile::management(),
        b"0123456789ABCDEF".to_vec(),
        1,
    );
    req.wrong_challenge_reply = true;
    let (expect, aarq) = association::start(req).unwrap();
    let aare = rig.exchange(1, &aarq.encode()).unwrap();
    let AareOutcome::Pass3 { next, request } = expect.handle(&aare).unwrap() else {
        panic!()
    };
    // On the wire pass 3 is a glo-action-request; the plain form is reply_to_HLS_authentication.
    assert_eq!(request.first(), Some(&0xCB));
    let Apdu::ActionRequest(ActionRequest::Normal { method, .. }) =
        Apdu::decode(next.plain_request()).unwrap()
    else {
        panic!()
    };
    assert_eq!((method.class_id, method.method_id), (15, 1));
    let reply = rig.exchange(1, &request).unwrap();
    let (plain, outcome) = next.handle_traced(&reply);
    let Apdu::ActionResponse(ActionResponse::Normal { response, .. }) =
        Apdu::decode(&plain.expect("the reply was protected")).unwrap()
    else {
        panic!()
    };
    assert_eq!(response.result, ActionResult::ReadWriteDenied);
    assert!(matches!(
        outcome,
        Ok(HlsOutcome::Refused(Refusal::Pass3Refused(_), _))
    ));
}

#[test]
fn client_detects_a_wrong_fctos() {
    let mut rig = Rig::new(&[Quirk::SendsWrongFCtoS]);
    let (expect, aarq) = association::start(AssociationRequest::from_profile(
        &ClientProfile::management(),
        b"0123456789ABCDEF".to_vec(),
        1,
    ))
    .unwrap();
    let aare = rig.exchange(1, &aarq.encode()).unwrap();
    let AareOutcome::Pass3 { next, request } = expect.handle(&aare).unwrap() else {
        panic!()
    };
    let reply = rig.exchange(1, &request).unwrap();
    let err = next.handle(&reply).unwrap_err();
    assert!(err.to_string().contains("f(CtoS) does not verify"), "{err}");
}

#[test]
fn aarq_problems_get_the_right_diagnostics() {
    let mut rig = Rig::new(&[]);
    let base = || {
        AssociationRequest::from_profile(
            &ClientProfile::management(),
            b"0123456789ABCDEF".to_vec(),
            100,
        )
    };
    let mut r = base();
    r.context =
        crate::wire::apdu::AppContext::Other(vec![0x60, 0x85, 0x75, 0x04, 0x07, 0x02, 0x03]);
    assert!(matches!(
        rig.associate_req(r),
        Err(Refusal::Rejected {
            result: 1,
            diagnostic: crate::wire::apdu::AcseDiagnostic::User(2),
            ..
        })
    ));
    let mut r = base();
    r.calling_ap_title = Some(vec![1]);
    r.initiate_counter = Some(200);
    assert!(matches!(
        rig.associate_req(r),
        Err(Refusal::Rejected {
            diagnostic: crate::wire::apdu::AcseDiagnostic::User(3),
            ..
        })
    ));
    let mut r = base();
    r.dlms_version = 5;
    r.invocation_counter = 300;
    match rig.associate_req(r) {
        Err(Refusal::Rejected {
            initiate_error: Some(e),
            ..
        }) => assert_eq!(e.value, 1),
        other => panic!("{other:?}"),
    }
    let mut pr = ClientProfile::public();
    pr.max_pdu_size = 11;
    match rig.associate_req(AssociationRequest::from_profile(&pr, vec![], 0)) {
        Err(Refusal::Rejected {
            initiate_error: Some(e),
            ..
        }) => assert_eq!(e.value, 3),
        other => panic!("{other:?}"),
    }
    // LLS with a wrong password: authentication-failure.
    let mut lls = ClientProfile::public();
    lls.sap = 3;
    lls.mechanism = Mechanism::Lls;
    lls.password = Some(b"wrong".to_vec());
    assert!(matches!(
        rig.associate_req(AssociationRequest::from_profile(&lls, vec![], 0)),
        Err(Refusal::Rejected {
            diagnostic: crate::wire::apdu::AcseDiagnostic::User(13),
            ..
        })
    ));
    lls.password = Some(b"12345678".to_vec());
    assert!(
        rig.associate_req(AssociationRequest::from_profile(&lls, vec![], 0))
            .is_ok()
    );
}

fn key_transfer(rig: &mut Rig, a: &mut Associated, id: u8, key: &Key, kek: &Key) -> ActionResult {
    let wrapped = wrap_key(kek, key);
    let req = Apdu::ActionRequest(ActionRequest::Normal {
        invoke_id: a.next_invoke_id(),
        method: MethodDescriptor {
            class_id: 64,
            instance: Obis::SECURITY_SETUP,
            method_id: 2,
        },
        parameters: Some(Data::Array(vec![Data::Structure(vec![
            Data::Enum(id),
            Data::OctetString(wrapped.to_vec()),
        ])])),
    });
    let bytes = a.wrap(&req.encode()).unwrap();
    let resp = rig.exchange(1, &bytes).unwrap();
    match a.unwrap(&resp).unwrap().apdu {
        Apdu::ActionResponse(ActionResponse::Normal { response, .. }) => response.result,
        other => panic!("{other}"),
    }
}

#[test]
fn key_transfer_takes_effect_after_the_response_and_the_old_key_is_refused() {
    let mut rig = Rig::new(&[]);
    let mut a = rig.associate(&ClientProfile::management(), 1);
    let new_ek: Key = "00112233445566778899AABBCCDDEEFF".parse().unwrap();
    // The response to the key transfer is still protected with the old key (a.unwrap succeeded).
    assert_eq!(
        key_transfer(&mut rig, &mut a, 0, &new_ek, &Key::EXAMPLE_KEK),
        ActionResult::Success
    );
    let next_ic = a.cipher.as_ref().unwrap().next_ic;
    // Old key: refused (the glo-initiate does not decipher).
    let old = AssociationRequest::from_profile(
        &ClientProfile::management(),
        b"0123456789ABCDEF".to_vec(),
        next_ic,
    );
    assert!(matches!(rig.associate_req(old), Err(Refusal::Exception(e)) if e.service_error == 5));
    let mut c = ClientProfile::management();
    c.encryption_key = Some(new_ek);
    let mut a = rig.associate(&c, next_ic + 1);
    let r = rig.get(&mut a, 1, Obis::LOGICAL_DEVICE_NAME, 2);
    assert!(matches!(value(&r), Data::OctetString(_)));
}

#[test]
fn bad_key_wrap_and_unknown_key_id_are_refused() {
    let mut rig = Rig::new(&[]);
    let mut a = rig.associate(&ClientProfile::management(), 1);
    let k: Key = "00112233445566778899AABBCCDDEEFF".parse().unwrap();
    assert_eq!(
        key_transfer(&mut rig, &mut a, 0, &k, &Key::EXAMPLE_AK),
        ActionResult::ObjectClassInconsistent
    );
    assert_eq!(
        key_transfer(&mut rig, &mut a, 9, &k, &Key::EXAMPLE_KEK),
        ActionResult::ObjectClassInconsistent
    );
    // Nothing changed: the same keys still work.
    let next = a.cipher.as_ref().unwrap().next_ic;
    rig.associate(&ClientProfile::management(), next);
}

#[test]
fn security_activate_only_strengthens_and_is_enforced() {
    let mut rig = Rig::new(&[]);
    let c = ClientProfile::policy_test();
    let mut a = rig.associate(&c, 1);
    let activate = |rig: &mut Rig, a: &mut Associated, p: u8| {
        let req = Apdu::ActionRequest(ActionRequest::Normal {
            invoke_id: a.next_invoke_id(),
            method: MethodDescriptor {
                class_id: 64,
                instance: Obis::new(0, 0, 43, 0, 2, 255),
                method_id: 1,
            },
            parameters: Some(Data::Enum(p)),
        });
        let bytes = a.wrap(&req.encode()).unwrap();
        let resp = rig.exchange(2, &bytes).unwrap();
        match a.unwrap(&resp).unwrap().apdu {
            Apdu::ActionResponse(ActionResponse::Normal { response, .. }) => response.result,
            other => panic!("{other}"),
        }
    };
    // Policy 0: a plain request is served.
    a.protection = Protection::None;
    let r = rig.get(&mut a, 1, Obis::LOGICAL_DEVICE_NAME, 2);
    assert!(matches!(r, Apdu::GetResponse(_)));
    a.protection = Protection::AuthenticatedEncrypted;
    assert_eq!(activate(&mut rig, &mut a, 3), ActionResult::Success);
    a.protection = Protection::None;
    let r = rig.get(&mut a, 1, Obis::LOGICAL_DEVICE_NAME, 2);
    assert!(matches!(r, Apdu::ExceptionResponse(_)), "{r}");
    a.protection = Protection::AuthenticatedEncrypted;
    assert_eq!(activate(&mut rig, &mut a, 1), ActionResult::OtherReason);
}

#[test]
fn long_get_results_come_in_blocks() {
    let mut rig = Rig::new(&[]);
    let mut c = ClientProfile::management();
    c.max_pdu_size = 128;
    let mut a = rig.associate(&c, 1);
    let first = rig.get(&mut a, 15, Obis::CURRENT_ASSOCIATION, 2);
    let Apdu::GetResponse(GetResponse::WithDatablock { block, .. }) = first else {
        panic!("{first}")
    };
    let mut data = block.result.unwrap();
    let mut n = block.block_number;
    let mut last = block.last_block;
    while !last {
        let req = Apdu::GetRequest(GetRequest::Next {
            invoke_id: 0xC1,
            block_number: n,
        });
        let bytes = a.wrap(&req.encode()).unwrap();
        let resp = rig.exchange(1, &bytes).unwrap();
        let Apdu::GetResponse(GetResponse::WithDatablock { block, .. }) =
            a.unwrap(&resp).unwrap().apdu
        else {
            panic!()
        };
        data.extend(block.result.unwrap());
        n = block.block_number;
        last = block.last_block;
    }
    let list = Data::decode(&data).unwrap();
    assert!(list.items().unwrap().len() > 10);
}

#[test]
fn no_service_without_an_association() {
    let mut rig = Rig::new(&[]);
    let req = Apdu::GetRequest(GetRequest::Normal {
        invoke_id: 0xC1,
        attribute: AttributeDescriptor {
            class_id: 1,
            instance: Obis::LOGICAL_DEVICE_NAME,
            attribute_id: 2,
        },
        access: None,
    });
    let r = rig.exchange(16, &req.encode()).unwrap();
    assert!(matches!(
        Apdu::decode(&r).unwrap(),
        Apdu::ExceptionResponse(_)
    ));
}

#[test]
fn rejects_next_block_number_at_the_counter_limit() {
    // GetRequest::Next with block number 0xFFFFFFFF during a long GET: the meter
    // computed `block_number + 1`, which overflows (a panic with debug
    // assertions, as in tests and fuzzing builds). It must answer
    // data-block-number-invalid instead.
    let mut rig = Rig::new(&[]);
    let mut c = ClientProfile::management();
    c.max_pdu_size = 128;
    let mut a = rig.associate(&c, 1);
    let first = rig.get(&mut a, 15, Obis::CURRENT_ASSOCIATION, 2);
    assert!(
        matches!(first, Apdu::GetResponse(GetResponse::WithDatablock { .. })),
        "{first}"
    );
    let req = Apdu::GetRequest(GetRequest::Next {
        invoke_id: 0xC1,
        block_number: u32::MAX,
    });
    let bytes = a.wrap(&req.encode()).unwrap();
    let resp = rig.exchange(1, &bytes).unwrap();
    let Apdu::GetResponse(GetResponse::WithDatablock { block, .. }) = a.unwrap(&resp).unwrap().apdu
    else {
        panic!("expected a data block")
    };
    assert_eq!(
        block.result,
        Err(crate::wire::apdu::DataAccessResult::DataBlockNumberInvalid)
    );
}
