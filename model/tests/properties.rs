//! Property tests: random operation sequences against the reference model
//! of `wirestream-model`, which checks the invariants after every step (see
//! the crate's documentation for the list). The fuzz targets run the same
//! executors on inputs decoded with `arbitrary`.
//!
//! 4096 cases per property: about 75 s for the whole file in a debug build on
//! two cores. Set `PROPTEST_CASES` to run more (or fewer).

use proptest::prelude::*;
use proptest::{collection::vec, option};
use wirestream_model::{
    Advance, ClientEnd, ClientInbound, ClientOp, ClientScenario, Control, Junk, Limits, PairOp,
    PairScenario, Pick, RegistryOp, RegistryScenario, ServerEnd, ServerInbound, ServerOp,
    ServerScenario, Timeout, run_client, run_pair, run_registry, run_server,
};

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Each case is one whole run; shrinking a long run is slow, keep it bounded.
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    any::<u8>().prop_map(Pick)
}

fn advance() -> impl Strategy<Value = Advance> {
    prop_oneof![
        3 => (0u16..2000).prop_map(Advance::Millis),
        1 => (0u8..40).prop_map(Advance::Secs),
        3 => Just(Advance::ToDeadline),
        1 => Just(Advance::BeforeDeadline),
        1 => Just(Advance::Stay),
    ]
}

fn timeout() -> impl Strategy<Value = Timeout> {
    prop_oneof![
        2 => Just(Timeout::Default),
        2 => (0u16..3000).prop_map(Timeout::Millis),
        1 => Just(Timeout::Never),
    ]
}

fn junk() -> impl Strategy<Value = Junk> {
    (any::<u8>(), 0u8..100).prop_map(|(kind, n)| Junk { kind, n })
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![Just(200u16), Just(501), Just(429), any::<u16>()]
}

fn close() -> impl Strategy<Value = Option<u16>> {
    option::of(prop_oneof![Just(1000u16), Just(1001), any::<u16>()])
}

fn control() -> impl Strategy<Value = Control> {
    prop_oneof![
        2 => Just(Control::Binary),
        2 => prop_oneof![Just(Control::Ping), Just(Control::Pong)],
        1 => Just(Control::Oversize),
        2 => Just(Control::AtLimit),
        1 => Just(Control::OverLimit),
        1 => close().prop_map(Control::Close),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    any::<[u8; 13]>().prop_map(|b| Limits {
        frames: b[0],
        bytes: b[1],
        client_requests: b[2],
        server_requests: b[3],
        emitted: b[4],
        frame_size: b[5],
        body: b[6],
        request: b[7],
        drain: b[8],
        close: b[9],
        ping: b[10],
        liveness: b[11],
        stall: b[12],
    })
}

fn server_inbound() -> impl Strategy<Value = ServerInbound> {
    prop_oneof![
        2 => Just(ServerInbound::Body),
        8 => (pick(), any::<u8>(), any::<u8>()).prop_map(|(id, response_id, content)| {
            ServerInbound::Notify { id, response_id, content }
        }),
        2 => (pick(), any::<u8>()).prop_map(|(id, shape)| ServerInbound::BadRequest { id, shape }),
        4 => (pick(), status(), any::<bool>(), any::<bool>()).prop_map(
            |(id, status, headers, body)| ServerInbound::Response { id, status, headers, body }
        ),
        2 => junk().prop_map(ServerInbound::Junk),
        1 => ".{0,40}".prop_map(ServerInbound::Text),
        1 => control().prop_map(ServerInbound::Control),
    ]
}

/// Padding: none three times in four, else up to 8 KiB (see `padding`).
fn pad() -> impl Strategy<Value = u8> {
    any::<u8>()
}

fn server_end() -> impl Strategy<Value = ServerEnd> {
    prop_oneof![
        Just(ServerEnd::TransportLost),
        Just(ServerEnd::Finish),
        (any::<u16>(), any::<bool>(), pad()).prop_map(|(code, json_message, pad)| {
            ServerEnd::Fail {
                code,
                json_message,
                pad,
            }
        }),
        Just(ServerEnd::RejectBody),
        Just(ServerEnd::GoAway),
    ]
}

fn server_op() -> impl Strategy<Value = ServerOp> {
    prop_oneof![
        30 => server_inbound().prop_map(ServerOp::Frame),
        10 => advance().prop_map(ServerOp::Advance),
        15 => (any::<u8>(), any::<bool>(), pad())
            .prop_map(|(completions, raw, pad)| ServerOp::SendChunk { completions, raw, pad }),
        12 => (pick(), option::of(any::<u16>()), pad())
            .prop_map(|(request, error, pad)| ServerOp::Respond { request, error, pad }),
        2 => pick().prop_map(|request| ServerOp::RespondDropped { request }),
        8 => (any::<bool>(), any::<bool>(), timeout(), pad()).prop_map(
            |(headers, body, timeout, pad)| ServerOp::SendServerRequest { headers, body, timeout, pad }
        ),
        5 => (0u8..8).prop_map(ServerOp::Read),
        3 => server_end().prop_map(ServerOp::End),
    ]
}

fn server_scenario() -> impl Strategy<Value = ServerScenario> {
    let body_first = prop_oneof![3 => Just(true), 1 => Just(false)];
    (limits(), body_first, any::<u8>(), vec(server_op(), 0..80)).prop_map(
        |(limits, body_first, read, ops)| ServerScenario {
            limits,
            body_first,
            read,
            ops,
        },
    )
}

fn client_inbound() -> impl Strategy<Value = ClientInbound> {
    prop_oneof![
        4 => any::<u8>().prop_map(|completions| ClientInbound::Chunk { completions }),
        4 => pick().prop_map(|id| ClientInbound::Ok { id }),
        2 => (pick(), any::<u16>()).prop_map(|(id, code)| ClientInbound::Error { id, code }),
        5 => (pick(), any::<bool>(), any::<bool>())
            .prop_map(|(id, headers, body)| ClientInbound::Request { id, headers, body }),
        1 => (any::<u16>(), any::<bool>())
            .prop_map(|(code, json_message)| ClientInbound::ErrorFrame { code, json_message }),
        2 => junk().prop_map(ClientInbound::Junk),
        1 => ".{0,40}".prop_map(ClientInbound::Text),
        1 => control().prop_map(ClientInbound::Control),
    ]
}

fn client_op() -> impl Strategy<Value = ClientOp> {
    prop_oneof![
        30 => client_inbound().prop_map(ClientOp::Frame),
        10 => advance().prop_map(ClientOp::Advance),
        15 => (any::<u8>(), any::<bool>(), timeout(), pad()).prop_map(
            |(response_id, parts, timeout, pad)| ClientOp::Notify { response_id, parts, timeout, pad }
        ),
        12 => (pick(), status(), any::<bool>(), any::<bool>(), pad()).prop_map(
            |(request, status, headers, body, pad)| {
                ClientOp::Respond { request, status, headers, body, pad }
            }
        ),
        5 => (0u8..8).prop_map(ClientOp::Read),
        2 => prop_oneof![Just(ClientEnd::TransportLost), Just(ClientEnd::Close)]
            .prop_map(ClientOp::End),
    ]
}

fn client_scenario() -> impl Strategy<Value = ClientScenario> {
    (limits(), any::<u8>(), pad(), vec(client_op(), 0..80)).prop_map(
        |(limits, read, body_pad, ops)| ClientScenario {
            limits,
            read,
            body_pad,
            ops,
        },
    )
}

fn registry_op() -> impl Strategy<Value = RegistryOp> {
    prop_oneof![
        3 => Just(RegistryOp::Attach),
        2 => any::<u8>().prop_map(RegistryOp::Detach),
        6 => (any::<u8>(), pick()).prop_map(|(c, id)| RegistryOp::Register(c, id)),
        2 => any::<u8>().prop_map(RegistryOp::Mint),
        2 => (any::<u8>(), pick()).prop_map(|(c, id)| RegistryOp::Unregister(c, id)),
        2 => pick().prop_map(RegistryOp::Lookup),
    ]
}

fn registry_scenario() -> impl Strategy<Value = RegistryScenario> {
    (any::<[u8; 4]>(), vec(registry_op(), 0..100)).prop_map(|(l, ops)| RegistryScenario {
        max_connections: l[0],
        max_ids_per_connection: l[1],
        max_ids: l[2],
        max_id_len: l[3],
        ops,
    })
}

fn pair_op() -> impl Strategy<Value = PairOp> {
    prop_oneof![
        4 => Just(PairOp::Step),
        3 => Just(PairOp::Drive),
        3 => advance().prop_map(PairOp::Advance),
        1 => Just(PairOp::Cut),
        5 => (any::<u8>(), pad())
            .prop_map(|(completions, pad)| PairOp::ServerChunk { completions, pad }),
        1 => Just(PairOp::ServerFinish),
        1 => any::<u16>().prop_map(|code| PairOp::ServerFail { code }),
        1 => Just(PairOp::ServerReject),
        1 => Just(PairOp::ServerGoAway),
        4 => (pick(), option::of(any::<u16>()))
            .prop_map(|(request, error)| PairOp::ServerRespond { request, error }),
        3 => timeout().prop_map(|timeout| PairOp::ServerRequest { timeout }),
        5 => (any::<u8>(), timeout())
            .prop_map(|(response_id, timeout)| PairOp::ClientNotify { response_id, timeout }),
        4 => (pick(), status()).prop_map(|(request, status)| PairOp::ClientRespond { request, status }),
        1 => Just(PairOp::ClientClose),
        1 => junk().prop_map(PairOp::InjectToServer),
        1 => junk().prop_map(PairOp::InjectToClient),
    ]
}

fn pair_scenario() -> impl Strategy<Value = PairScenario> {
    (limits(), vec(pair_op(), 0..60)).prop_map(|(limits, ops)| PairScenario { limits, ops })
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn server_session_keeps_every_invariant_and_ends_once(s in server_scenario()) {
        let report = run_server(&s);
        prop_assert!(report.end.is_some());
    }

    #[test]
    fn client_session_keeps_every_invariant_and_ends_once(s in client_scenario()) {
        let report = run_client(&s);
        prop_assert!(report.end.is_some());
    }

    #[test]
    fn registry_matches_its_model_and_is_empty_once_every_connection_ended(
        s in registry_scenario()
    ) {
        prop_assert_eq!(run_registry(&s), s.ops.len());
    }

    #[test]
    fn any_interleaving_through_the_pair_ends_both_sides_closed_with_nothing_pending(
        s in pair_scenario()
    ) {
        let report = run_pair(&s);
        prop_assert!(report.client_end.is_some() && report.server_end.is_some());
    }
}

/// The generators reach what the model now predicts: keepalive pings, each
/// liveness end, `TooLarge` refusals and `go_away`, in a few hundred runs.
#[test]
fn the_generators_reach_liveness_refusals_and_shutdown() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use wirestream_proto::{CloseCode, EndReason};

    let mut runner = TestRunner::deterministic();
    let (mut pings, mut too_large) = (0, 0);
    let mut ends = Vec::new();
    for _ in 0..300 {
        let s = server_scenario().new_tree(&mut runner).unwrap().current();
        let r = run_server(&s);
        pings += r.pings;
        too_large += r.too_large;
        ends.extend(r.end);
        let c = client_scenario().new_tree(&mut runner).unwrap().current();
        let r = run_client(&c);
        pings += r.pings;
        too_large += r.too_large;
        ends.extend(r.end);
    }
    assert!(
        pings > 0 && too_large > 0,
        "pings {pings}, too large {too_large}"
    );
    for end in [
        EndReason::PeerSilent,
        EndReason::WriteStalled,
        EndReason::Local(CloseCode::GOING_AWAY),
    ] {
        assert!(ends.contains(&end), "no run ended with {end:?}");
    }
}
