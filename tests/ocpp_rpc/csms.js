#!/usr/bin/env node
// A strict-mode CSMS on the npm package ocpp-rpc, used by tests/test_ocpp_rpc_peer.py as an
// independent peer: every CALL and CALLRESULT in both directions is validated by ocpp-rpc against
// the OCPP 2.0.1 JSON schemas it ships (strictMode), plus a few OCPP-J rules those schemas cannot
// express (message id length, CALLERROR shape, RFC 3339 time offsets).
//
// Usage: node csms.js [PORT] [--connectors=N] [--timeout=SECONDS] [--scenario=provisioning|session|remote]
//   PORT 0 (the default) picks a free port. The first stdout line is "listening 127.0.0.1:<port>";
//   the last is ONE JSON summary:
//   {"ok", "violations", "received", "answered", "responses", "reports", "statuses", "steps",
//    "transactions", "meterValues", "error", ...}
//   Exit 0 when the scripted session ran to its end (violations only make "ok" false), 1 on an
//   unexpected error, 2 on the overall timeout. Progress goes to stderr.
//   "received" counts the station's CALLs by action, "answered" the CALLRESULTs this CSMS sent
//   back (a CALLRESULT that fails strict validation goes out as a CALLERROR instead: "refused").
//
// The scripted session, for one station (--scenario=provisioning, the default):
//   BootNotification (Accepted, interval 1), StatusNotification for every connector, then the CSMS
//   calls GetVariables, SetVariables, GetVariables, GetBaseReport(FullInventory) and waits for every
//   NotifyReport part up to tbc=false, GetReport by componentVariable and by componentCriteria,
//   TriggerMessage(Heartbeat) and TriggerMessage(StatusNotification, evse), waits for the triggered
//   messages, and finally for at least MIN_HEARTBEATS Heartbeats in all.
// --scenario=session: a charging session the station's OEM plays (the test drives it): after the
//   boot and the StatusNotifications, the CSMS answers Authorize (Accepted), TransactionEvent
//   (idTokenInfo Accepted when an idToken comes) and MeterValues, and waits for an Authorize, a
//   transaction's Started, Updated and Ended, and a MeterValues outside a transaction.
// --scenario=remote: the CSMS controls the station (its OEM answers like firmware would):
//   RequestStartTransaction (Accepted, then Started with triggerReason RemoteStart), an unknown
//   RequestStopTransaction (Rejected), RequestStopTransaction (Accepted, then Ended RemoteStop),
//   ChangeAvailability Inoperative and Operative, UnlockConnector, Reset OnIdle.
'use strict';

const { RPCServer, createRPCError } = require('ocpp-rpc');
const schemas = require('ocpp-rpc/lib/schemas/ocpp2_0_1.json');
const { version: RPC_VERSION } = require('ocpp-rpc/package.json');

const PROTOCOL = 'ocpp2.0.1';
const HEARTBEAT_INTERVAL = 1;
const MIN_HEARTBEATS = 3; // the triggered one and two periodic ones
const STEP_TIMEOUT_MS = 8000;

// --- arguments

let port = 0;
let connectors = 2;
let timeoutSeconds = 30;
let scenario = 'provisioning';
for (const arg of process.argv.slice(2)) {
    let m;
    if ((m = /^--connectors=(\d+)$/.exec(arg))) connectors = Number(m[1]);
    else if ((m = /^--scenario=(provisioning|session|remote)$/.exec(arg))) scenario = m[1];
    else if ((m = /^--timeout=(\d+(?:\.\d+)?)$/.exec(arg))) timeoutSeconds = Number(m[1]);
    else if (/^\d+$/.test(arg)) port = Number(arg);
    else {
        process.stderr.write(`csms.js: unknown argument ${arg}\n`);
        process.exit(64);
    }
}

// --- what the summary reports

const summary = {
    ok: false,
    ocpp_rpc: RPC_VERSION,
    protocol: null, // the negotiated subprotocol
    offered: [], // the subprotocols the station offered
    identity: null,
    violations: [],
    scenario,
    received: {}, // station CALL action -> count
    answered: {}, // station CALL action -> CALLRESULTs this CSMS sent
    refused: {}, // station CALL action -> CALLERRORs this CSMS sent
    responses: {}, // CSMS CALL action -> [station's CALLRESULT payloads]
    boot: null, // the BootNotification payload
    statuses: [], // [evseId, connectorId, connectorStatus, timestamp] in order of arrival
    reports: {}, // requestId -> [{seqNo, tbc, items, generatedAt}]
    steps: [], // the scripted steps completed
    unexpected: [], // station CALLs outside the script
    authorizations: [], // Authorize idTokens
    transactions: [], // TransactionEvents: {eventType, seqNo, triggerReason, transactionId, ...}
    meterValues: [], // MeterValues: {evseId, readings, contexts}
    error: null,
};
const log = (...args) => process.stderr.write(`[csms.js] ${args.join(' ')}\n`);

function violation(kind, details) {
    const entry = { kind, ...details };
    summary.violations.push(entry);
    log('VIOLATION', JSON.stringify(entry));
}

// --- checks the JSON schemas cannot make

// OCPP-J 2.0.1 (part 4) 4.1.3: the message id is a string of at most 36 characters.
const MAX_MESSAGE_ID = 36;
// OCPP-J 2.0.1 (part 4) 4.3: the RPC framework error codes.
const ERROR_CODES = new Set([
    'FormatViolation', 'GenericError', 'InternalError', 'MessageTypeNotSupported', 'NotImplemented',
    'NotSupported', 'OccurrenceConstraintViolation', 'PropertyConstraintViolation', 'ProtocolError',
    'RpcFrameworkError', 'SecurityError', 'TypeConstraintViolation',
]);
// RFC 3339 5.6 date-time: a time offset is mandatory. ocpp-rpc's ajv-formats 2.1.1 lets a
// date-time without offset pass ("2024-01-01T00:00:00"), so the peer checks it itself.
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const DATE_TIME_KEYS = new Set(); // the property names the schemas give format date-time
(function collectDateTimeKeys(node) {
    if (!node || typeof node !== 'object') return;
    if (!Array.isArray(node) && node.properties && typeof node.properties === 'object') {
        for (const [name, property] of Object.entries(node.properties)) {
            if (property?.format === 'date-time') DATE_TIME_KEYS.add(name);
        }
    }
    Object.values(node).forEach(collectDateTimeKeys);
})(schemas);

function checkTimestamps(where, payload, path = '$') {
    if (Array.isArray(payload)) {
        payload.forEach((v, i) => checkTimestamps(where, v, `${path}[${i}]`));
    } else if (payload && typeof payload === 'object') {
        for (const [k, v] of Object.entries(payload)) {
            if (DATE_TIME_KEYS.has(k) && typeof v === 'string' && !RFC3339.test(v)) {
                violation('date-time', { ...where, path: `${path}.${k}`, value: v,
                    error: 'not an RFC 3339 date-time with a time offset' });
            }
            checkTimestamps(where, v, `${path}.${k}`);
        }
    }
}

function checkFrame(raw) {
    let frame;
    try {
        frame = JSON.parse(raw.toString());
    } catch {
        return; // ocpp-rpc reports it as a badMessage
    }
    if (!Array.isArray(frame)) return;
    const [type, id] = frame;
    if (typeof id === 'string' && id.length > MAX_MESSAGE_ID) {
        violation('frame', { messageId: id, error: `message id longer than ${MAX_MESSAGE_ID} characters` });
    }
    const lengths = { 2: 4, 3: 3, 4: 5 };
    if (lengths[type] !== undefined && frame.length !== lengths[type]) {
        violation('frame', { messageId: id, error: `message type ${type} with ${frame.length} elements, not ${lengths[type]}` });
    }
    if (type === 4) {
        const [, , code, description, details] = frame;
        if (!ERROR_CODES.has(code)) violation('frame', { messageId: id, error: `CALLERROR code ${JSON.stringify(code)} is not an OCPP-J 2.0.1 error code` });
        if (typeof description !== 'string' || description.length > 255) violation('frame', { messageId: id, error: 'CALLERROR errorDescription is not a string of at most 255 characters' });
        if (!details || typeof details !== 'object' || Array.isArray(details)) violation('frame', { messageId: id, error: 'CALLERROR errorDetails is not an object' });
    }
}

// The station's CALLs by message id, to count what this CSMS answered them with.
const stationCalls = new Map();

function noteFrame(raw, outbound) {
    let frame;
    try {
        frame = JSON.parse(raw.toString());
    } catch {
        return;
    }
    if (!Array.isArray(frame)) return;
    const [type, id, method] = frame;
    if (!outbound && type === 2) {
        stationCalls.set(id, method);
    } else if (outbound && (type === 3 || type === 4) && stationCalls.has(id)) {
        const counts = type === 3 ? summary.answered : summary.refused;
        const action = stationCalls.get(id);
        counts[action] = (counts[action] ?? 0) + 1;
        stationCalls.delete(id);
    }
}

function describeError(error) {
    return {
        code: error?.rpcErrorCode ?? error?.name ?? null,
        error: error?.message || error?.rpcErrorMessage || String(error),
        errors: (error?.details?.errors ?? []).map(e => ({
            instancePath: e.instancePath, schemaPath: e.schemaPath, keyword: e.keyword,
            message: e.message, params: e.params,
        })),
    };
}

// --- waiting for the station's CALLs

const calls = []; // {action, params, index}
const waiters = new Set();

function record(action, params) {
    summary.received[action] = (summary.received[action] ?? 0) + 1;
    calls.push({ action, params, index: calls.length });
    for (const waiter of [...waiters]) waiter();
}

function waitFor(what, predicate, timeoutMs = STEP_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
        const check = () => {
            const found = predicate();
            if (found) {
                waiters.delete(check);
                clearTimeout(timer);
                resolve(found);
                return true;
            }
            return false;
        };
        const timer = setTimeout(() => {
            waiters.delete(check);
            reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
    });
}

const since = (start, action, filter = () => true) =>
    calls.slice(start).filter(c => c.action === action && filter(c.params));

// --- the session

let finished = false;
let server;

function finish(exitCode, error) {
    if (finished) return;
    finished = true;
    clearTimeout(hardTimeout);
    if (error) summary.error = error;
    summary.ok = !error && summary.violations.length === 0 && summary.steps.includes('done');
    process.stdout.write(JSON.stringify(summary) + '\n', () => {
        const closing = server ? server.close({ code: 1000, reason: 'session over', force: true }) : Promise.resolve();
        Promise.race([closing, new Promise(r => setTimeout(r, 1000))]).finally(() => process.exit(exitCode));
    });
}

const hardTimeout = setTimeout(() => {
    finish(2, `overall timeout of ${timeoutSeconds} s (steps done: ${summary.steps.join(', ') || 'none'})`);
}, timeoutSeconds * 1000);

async function csmsCall(client, action, params) {
    try {
        const result = await client.call(action, params, { callTimeoutMs: STEP_TIMEOUT_MS });
        (summary.responses[action] ??= []).push(result);
        checkTimestamps({ direction: 'inbound', isCall: false, method: action }, result);
        log(`${action} ->`, JSON.stringify(result));
        return result;
    } catch (error) {
        if (!error._recorded) {
            violation('rpc-error', { direction: 'inbound', method: action, ...describeError(error) });
        }
        throw error;
    }
}

function expectEqual(what, actual, expected) {
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        violation('unexpected-result', { what, actual, expected });
    }
}

async function waitForReport(requestId) {
    const parts = () => since(0, 'NotifyReport', p => p.requestId === requestId);
    await waitFor(`the last NotifyReport of request ${requestId}`, () => parts().some(c => !c.params.tbc));
    return parts();
}

const step = name => {
    summary.steps.push(name);
    log('step done:', name);
};
const connectorsSeen = () =>
    new Set(since(0, 'StatusNotification').map(c => `${c.params.evseId}/${c.params.connectorId}`));

async function bootAndStatus() {
    await waitFor('BootNotification', () => since(0, 'BootNotification').length > 0);
    step('boot');
    await waitFor(`StatusNotification for ${connectors} connectors`, () => connectorsSeen().size >= connectors);
    step('status');
}

// --scenario=session: the OEM drives; this CSMS answers and waits for each part of the session.
async function chargingSession() {
    await bootAndStatus();
    const sessionStep = timeoutSeconds * 1000; // the overall timeout bounds it first
    const events = type => since(0, 'TransactionEvent', p => p.eventType === type);
    await waitFor('Authorize', () => since(0, 'Authorize').length > 0, sessionStep);
    step('Authorize');
    await waitFor('TransactionEvent Started', () => events('Started').length > 0, sessionStep);
    step('TransactionEvent Started');
    await waitFor('TransactionEvent Updated', () => events('Updated').length > 0, sessionStep);
    step('TransactionEvent Updated');
    await waitFor('TransactionEvent Ended', () => events('Ended').length > 0, sessionStep);
    step('TransactionEvent Ended');
    await waitFor('MeterValues', () => since(0, 'MeterValues').length > 0, sessionStep);
    step('MeterValues');
    step('done');
}

// --scenario=remote: the CSMS starts and stops a transaction and controls the station.
async function remoteControl(client) {
    await bootAndStatus();
    const events = (type, trigger) =>
        since(0, 'TransactionEvent', p => p.eventType === type && p.triggerReason === trigger);
    let result = await csmsCall(client, 'RequestStartTransaction', {
        evseId: 1, remoteStartId: 42, idToken: { idToken: 'RFID42', type: 'ISO14443' },
    });
    expectEqual('RequestStartTransaction status', result.status, 'Accepted');
    const [started] = await waitFor('TransactionEvent Started (RemoteStart)',
        () => events('Started', 'RemoteStart').length > 0 && events('Started', 'RemoteStart'));
    expectEqual('remoteStartId', started.params.transactionInfo.remoteStartId, 42);
    step('RequestStartTransaction');
    result = await csmsCall(client, 'RequestStopTransaction', { transactionId: 'no-such-transaction' });
    expectEqual('RequestStopTransaction(unknown) status', result.status, 'Rejected');
    const transactionId = started.params.transactionInfo.transactionId;
    result = await csmsCall(client, 'RequestStopTransaction', { transactionId });
    expectEqual('RequestStopTransaction status', result.status, 'Accepted');
    await waitFor('TransactionEvent Ended (RemoteStop)', () => events('Ended', 'RemoteStop').length > 0);
    step('RequestStopTransaction');
    result = await csmsCall(client, 'ChangeAvailability', { operationalStatus: 'Inoperative', evse: { id: 1 } });
    expectEqual('ChangeAvailability(Inoperative) status', result.status, 'Accepted');
    result = await csmsCall(client, 'ChangeAvailability', { operationalStatus: 'Operative' });
    expectEqual('ChangeAvailability(Operative) status', result.status, 'Accepted');
    step('ChangeAvailability');
    result = await csmsCall(client, 'UnlockConnector', { evseId: 1, connectorId: 1 });
    expectEqual('UnlockConnector status', result.status, 'Unlocked');
    step('UnlockConnector');
    result = await csmsCall(client, 'Reset', { type: 'OnIdle' });
    expectEqual('Reset status', result.status, 'Accepted');
    step('Reset');
    step('done');
}

async function session(client) {
    if (scenario === 'session') return chargingSession();
    if (scenario === 'remote') return remoteControl(client);
    await bootAndStatus();

    const cv = (component, variable, extra = {}) => ({ component, variable, ...extra });
    await csmsCall(client, 'GetVariables', {
        getVariableData: [
            cv({ name: 'OCPPCommCtrlr' }, { name: 'HeartbeatInterval' }),
            cv({ name: 'OCPPCommCtrlr' }, { name: 'OfflineThreshold' }),
            cv({ name: 'SecurityCtrlr' }, { name: 'BasicAuthPassword' }), // WriteOnly
            cv({ name: 'NoSuchCtrlr' }, { name: 'Enabled' }), // unknown component
            cv({ name: 'OCPPCommCtrlr' }, { name: 'NoSuchVariable' }), // unknown variable
            cv({ name: 'EVSE', evse: { id: 1 } }, { name: 'AvailabilityState' }),
            cv({ name: 'OCPPCommCtrlr' }, { name: 'HeartbeatInterval' }, { attributeType: 'MaxSet' }),
        ],
    });
    step('GetVariables');
    await csmsCall(client, 'SetVariables', {
        setVariableData: [
            cv({ name: 'OCPPCommCtrlr' }, { name: 'OfflineThreshold' }, { attributeValue: '90' }),
            cv({ name: 'OCPPCommCtrlr' }, { name: 'HeartbeatInterval' }, { attributeValue: 'abc' }),
        ],
    });
    step('SetVariables');
    await csmsCall(client, 'GetVariables', {
        getVariableData: [
            cv({ name: 'OCPPCommCtrlr' }, { name: 'OfflineThreshold' }),
            cv({ name: 'OCPPCommCtrlr' }, { name: 'HeartbeatInterval' }),
        ],
    });
    step('GetVariables after SetVariables');

    let result = await csmsCall(client, 'GetBaseReport', { requestId: 101, reportBase: 'FullInventory' });
    expectEqual('GetBaseReport(FullInventory) status', result.status, 'Accepted');
    await waitForReport(101);
    step('GetBaseReport');

    result = await csmsCall(client, 'GetReport', {
        requestId: 102,
        componentVariable: [
            cv({ name: 'EVSE', evse: { id: 1 } }, { name: 'AvailabilityState' }),
            cv({ name: 'Connector', evse: { id: 1, connectorId: 1 } }, { name: 'AvailabilityState' }),
        ],
    });
    expectEqual('GetReport(componentVariable) status', result.status, 'Accepted');
    await waitForReport(102);
    result = await csmsCall(client, 'GetReport', { requestId: 103, componentCriteria: ['Available'] });
    if (result.status === 'Accepted') await waitForReport(103);
    step('GetReport');

    let start = calls.length;
    result = await csmsCall(client, 'TriggerMessage', { requestedMessage: 'Heartbeat' });
    expectEqual('TriggerMessage(Heartbeat) status', result.status, 'Accepted');
    await waitFor('the triggered Heartbeat', () => since(start, 'Heartbeat').length > 0);
    step('TriggerMessage(Heartbeat)');

    const [evseId, connectorId] = [...connectorsSeen()].sort().pop().split('/').map(Number);
    start = calls.length;
    result = await csmsCall(client, 'TriggerMessage', {
        requestedMessage: 'StatusNotification',
        evse: { id: evseId, connectorId },
    });
    expectEqual('TriggerMessage(StatusNotification) status', result.status, 'Accepted');
    await waitFor(`the triggered StatusNotification of EVSE ${evseId} connector ${connectorId}`, () =>
        since(start, 'StatusNotification', p => p.evseId === evseId && p.connectorId === connectorId).length > 0);
    step('TriggerMessage(StatusNotification)');

    await waitFor(`${MIN_HEARTBEATS} Heartbeats`, () => since(0, 'Heartbeat').length >= MIN_HEARTBEATS,
        (MIN_HEARTBEATS + 2) * HEARTBEAT_INTERVAL * 1000);
    step('Heartbeats');
    step('done');
}

// --- the server

const STATION_CALLS = {
    BootNotification: params => {
        summary.boot = params;
        return { currentTime: new Date().toISOString(), interval: HEARTBEAT_INTERVAL, status: 'Accepted' };
    },
    StatusNotification: params => {
        summary.statuses.push([params.evseId, params.connectorId, params.connectorStatus, params.timestamp]);
        return {};
    },
    Heartbeat: () => ({ currentTime: new Date().toISOString() }),
    SecurityEventNotification: () => ({}), // A04: StartupOfTheDevice at every start
    Authorize: params => {
        summary.authorizations.push(params.idToken);
        return { idTokenInfo: { status: 'Accepted' } };
    },
    TransactionEvent: params => {
        summary.transactions.push({
            eventType: params.eventType, seqNo: params.seqNo, triggerReason: params.triggerReason,
            transactionId: params.transactionInfo?.transactionId,
            chargingState: params.transactionInfo?.chargingState ?? null,
            stoppedReason: params.transactionInfo?.stoppedReason ?? null,
            evseId: params.evse?.id ?? null, idToken: params.idToken ?? null,
            offline: params.offline ?? false,
            contexts: [...new Set((params.meterValue ?? []).flatMap(
                m => m.sampledValue.map(v => v.context ?? 'Sample.Periodic')))],
        });
        // TransactionEventResponse: idTokenInfo is required when the request has an idToken
        return params.idToken ? { idTokenInfo: { status: 'Accepted' } } : {};
    },
    MeterValues: params => {
        summary.meterValues.push({
            evseId: params.evseId,
            readings: params.meterValue.reduce((n, m) => n + m.sampledValue.length, 0),
            contexts: [...new Set(params.meterValue.flatMap(
                m => m.sampledValue.map(v => v.context ?? 'Sample.Periodic')))],
        });
        return {};
    },
    NotifyReport: params => {
        (summary.reports[params.requestId] ??= []).push({
            seqNo: params.seqNo, tbc: params.tbc ?? false,
            items: (params.reportData ?? []).length, generatedAt: params.generatedAt,
        });
        return {};
    },
};

async function main() {
    server = new RPCServer({
        protocols: [PROTOCOL],
        strictMode: true,
        callTimeoutMs: STEP_TIMEOUT_MS,
        pingIntervalMs: 0,
    });
    let stationConnected = false;
    const strictFailures = new Set(); // message ids
    server.auth((accept, reject, handshake) => {
        summary.offered = [...handshake.protocols];
        if (stationConnected) return reject(409, 'one station only');
        if (!handshake.protocols.has(PROTOCOL)) {
            violation('handshake', { error: `the station offered ${JSON.stringify(summary.offered)}, not ${PROTOCOL}` });
            return reject(400, `subprotocol ${PROTOCOL} required`);
        }
        stationConnected = true;
        accept({}, PROTOCOL);
    });
    server.on('client', client => {
        summary.identity = client.identity;
        summary.protocol = client.protocol;
        log(`station ${client.identity} connected with ${client.protocol}`);
        client.on('message', ({ message, outbound }) => {
            if (!outbound) checkFrame(message);
            noteFrame(message, outbound);
        });
        client.on('strictValidationFailure', event => {
            event.error._recorded = true;
            strictFailures.add(event.messageId);
            violation('strict', {
                direction: event.outbound ? 'outbound' : 'inbound',
                isCall: event.isCall, messageId: event.messageId, method: event.method,
                ...describeError(event.error),
            });
        });
        client.on('badMessage', ({ buffer, error }) => {
            violation('bad-message', { message: buffer.toString().slice(0, 500), ...describeError(error) });
        });
        client.on('callError', ({ outbound, messageId, method, error }) => {
            // CALLERRORs this CSMS sends to the station (those it receives are recorded by csmsCall)
            if (!outbound && !error._recorded && !strictFailures.has(messageId)) {
                violation('rpc-error', { direction: 'outbound', method, ...describeError(error) });
            }
        });
        client.on('close', ({ code, reason }) => {
            if (!finished) finish(1, `the station disconnected (${code} ${reason})`);
        });
        for (const [action, answer] of Object.entries(STATION_CALLS)) {
            client.handle(action, ({ params }) => {
                checkTimestamps({ direction: 'inbound', isCall: true, method: action }, params);
                const response = answer(params);
                record(action, params);
                return response;
            });
        }
        client.handle(({ method, params }) => {
            record(method, params);
            summary.unexpected.push({ action: method, params });
            const error = createRPCError('NotImplemented', `this scripted CSMS does not handle ${method}`);
            error._recorded = true; // listed in "unexpected", not a violation
            throw error;
        });
        session(client).then(() => finish(0), error => finish(1, String(error?.message ?? error)));
    });
    const http = await server.listen(port, '127.0.0.1');
    process.stdout.write(`listening 127.0.0.1:${http.address().port}\n`);
}

main().catch(error => finish(1, `start-up failed: ${error?.stack ?? error}`));
