#!/usr/bin/env node
// A Node.js caller of the insights service, as another team's service would write it: stubs are
// loaded from protos/ at run time (@grpc/proto-loader), nothing is generated. It walks the main
// paths of the API and prints one JSON summary on stdout, which tests/integration/test_node_client.py
// checks. Configuration comes from the environment (the key stays off the command line):
//   INSIGHTS_TARGET          host:port of a plaintext server
//   INSIGHTS_API_KEY         a key with every scope ("*")
//   INSIGHTS_ENVIRONMENT_ID  the environment holding the events
//   INSIGHTS_KEEPALIVE_MS    keepalive ping interval (default 5000, grpc-js's common setting)
//   INSIGHTS_IDLE_MS         idle time before the last call (default 0): a manual probe of the
//                            server's keepalive policy, never used by the test
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const REPO = path.resolve(__dirname, '..', '..');
const INCLUDE_DIRS = [path.join(REPO, 'protos')];  // our protos and the vendored google/rpc ones
const TIMEOUT_MS = 30000;
const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

function config() {
  const need = (name) => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set`);
    return value;
  };
  return {
    target: need('INSIGHTS_TARGET'),
    key: need('INSIGHTS_API_KEY'),
    // Kept as a string: int64 fields travel as decimal strings (longs: String below).
    environmentId: need('INSIGHTS_ENVIRONMENT_ID'),
    keepaliveMs: Number(process.env.INSIGHTS_KEEPALIVE_MS || 5000),
    idleMs: Number(process.env.INSIGHTS_IDLE_MS || 0),
  };
}

/** The service clients, built from the .proto files with the proto field names (keepCase). */
function loadServices() {
  const definition = protoLoader.loadSync(
    ['insights/v1/insight.proto', 'insights/v1/query_service.proto', 'insights/v1/sharing.proto'],
    { includeDirs: INCLUDE_DIRS, keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  return grpc.loadPackageDefinition(definition).insights.v1;
}

/** google.rpc.Status and its detail messages, for decoding the status details trailer. */
function loadStatusTypes() {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    for (const dir of INCLUDE_DIRS) {
      const candidate = path.join(dir, target);
      if (fs.existsSync(candidate)) return candidate;
    }
    return protobuf.util.path.resolve(origin, target);
  };
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
  return root;
}

/** A unary call as a promise; rejects with the grpc-js ServiceError. */
function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + TIMEOUT_MS);
    client[method](request, metadata, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

/** Every message of a server stream, in order. */
function collect(stream) {
  return new Promise((resolve, reject) => {
    const messages = [];
    stream.on('data', (message) => messages.push(message));
    stream.on('error', reject);
    stream.on('end', () => resolve(messages));
  });
}

/** The numbers of a trends result: per series its label and data. */
function trendsNumbers(result) {
  const series = (result && result.trends && result.trends.series) || [];
  return series.map((s) => ({ label: s.label, data: s.data, count: s.count }));
}

/** google.rpc.Status from a failed call's trailers, with each Any detail decoded by its type URL. */
function decodeRichError(err, statusTypes) {
  const raw = err.metadata && err.metadata.get(STATUS_DETAILS_KEY);
  if (!raw || raw.length === 0) return { code: err.code, message: err.details, details: null };
  const Status = statusTypes.lookupType('google.rpc.Status');
  const status = Status.toObject(Status.decode(raw[0]), { defaults: true });
  const details = status.details.map((any) => {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const type = statusTypes.lookupType(typeName);
    return { type: typeName, ...type.toObject(type.decode(any.value), { defaults: true }) };
  });
  return { code: err.code, grpc_code_name: grpc.status[err.code], message: err.details, status_code: status.code, details };
}

function trendsQuery(event) {
  return {
    insight_viz_node: {
      source: {
        trends_query: {
          series: [{ events_node: { event, math: 'MATH_TYPE_TOTAL' } }],
          interval: 'INTERVAL_TYPE_DAY',
          date_range: { date_from: '-30d' },
        },
      },
    },
  };
}

function funnelQuery() {
  return {
    insight_viz_node: {
      source: {
        funnels_query: { series: [{ events_node: { event: '$pageview' } }, { events_node: { event: 'signed_up' } }] },
      },
    },
  };
}

// grpc-js logs a GOAWAY ENHANCE_YOUR_CALM "too_many_pings" as "... rejected by server because of
// excess pings ..."; a logger of our own sees it (grpc-js then doubles its ping interval).
function watchExcessPings() {
  const seen = [];
  grpc.setLogger({
    error: (...args) => {
      const line = args.join(' ');
      if (/excess pings|too_many_pings/i.test(line)) seen.push(line);
      process.stderr.write(`${line}\n`);
    },
  });
  grpc.setLogVerbosity(grpc.logVerbosity.ERROR);
  return seen;
}

async function run() {
  const cfg = config();
  const excessPings = watchExcessPings();
  const v1 = loadServices();
  const statusTypes = loadStatusTypes();
  const options = {
    'grpc.keepalive_time_ms': cfg.keepaliveMs,
    'grpc.keepalive_timeout_ms': 10000,
    'grpc.keepalive_permit_without_calls': 1,
  };
  const credentials = grpc.credentials.createInsecure();
  const insights = new v1.InsightsService(cfg.target, credentials, options);
  const queries = new v1.QueryService(cfg.target, credentials, options);
  const sharing = new v1.SharingService(cfg.target, credentials, options);
  const auth = new grpc.Metadata();
  auth.set('authorization', `Bearer ${cfg.key}`);
  const env = cfg.environmentId;
  const marker = `node-client-${process.pid}-${Date.now()}`;
  const summary = { ok: false, marker };

  // Create: a trend of pageviews, and a funnel with the same tag that the list filter must drop.
  const created = await unary(insights, 'CreateInsight', {
    environment_id: env,
    insight: { name: `Pageviews ${marker}`, description: 'kept by the mask', tags: [marker], query: trendsQuery('$pageview') },
  }, auth);
  const funnel = await unary(insights, 'CreateInsight', {
    environment_id: env,
    insight: { name: `Funnel ${marker}`, tags: [marker], query: funnelQuery() },
  }, auth);
  summary.created = { id: created.id, short_id: created.short_id, name: created.name, tags: created.tags, funnel_id: funnel.id };

  // Get with a computing refresh mode: the engine runs now and the result is attached.
  const got = await unary(insights, 'GetInsight', { environment_id: env, id: created.id, refresh: 'REFRESH_MODE_FORCE_BLOCKING' }, auth);
  summary.get = {
    id: got.id,
    is_cached: got.is_cached,
    has_last_refresh: Boolean(got.last_refresh),
    result_kind: got.result ? got.result.result : null,
    series: trendsNumbers(got.result),
  };

  // List with filters: the tag, the kind and a search text (the funnel shares the tag).
  const listed = await unary(insights, 'ListInsights', {
    environment_id: env, tags: [marker], insight: 'INSIGHT_TYPE_TRENDS', search: 'pageviews', basic: true,
  }, auth);
  summary.list = { count: listed.count, ids: listed.results.map((i) => i.id) };

  // Update through a FieldMask: only `name` changes, although `description` is sent too.
  const updated = await unary(insights, 'UpdateInsight', {
    environment_id: env,
    id: created.id,
    insight: { name: `Renamed ${marker}`, description: 'must not be written' },
    update_mask: { paths: ['name'] },
  }, auth);
  summary.update = { name: updated.name, description: updated.description };

  // StreamQuery over the insight's own query (as read back): status events, then the result.
  const events = await collect(queries.StreamQuery(
    { environment_id: env, query: got.query, refresh: 'REFRESH_MODE_FORCE_BLOCKING' },
    auth,
    { deadline: new Date(Date.now() + TIMEOUT_MS) },
  ));
  const last = events[events.length - 1];
  summary.stream = {
    kinds: events.map((e) => e.event),
    final_state: events.filter((e) => e.event === 'status').map((e) => e.status.complete).pop(),
    series: last && last.event === 'result' ? trendsNumbers(last.result.result) : null,
  };

  // Sharing: enable the public link, then read the insight with its token and no API key.
  const shared = await unary(sharing, 'UpdateSharingConfiguration', {
    environment_id: env, insight_id: created.id, sharing_configuration: { enabled: true }, update_mask: { paths: ['enabled'] },
  }, auth);
  const viewer = new grpc.Metadata();
  viewer.set('x-sharing-access-token', shared.access_token);
  const sharedInsight = await unary(sharing, 'GetSharedInsight', {}, viewer);
  summary.shared = {
    enabled: shared.enabled,
    token_length: shared.access_token.length,
    id: sharedInsight.id,
    name: sharedInsight.name,
    series: trendsNumbers(sharedInsight.result),
  };

  if (cfg.idleMs > 0) await new Promise((resolve) => setTimeout(resolve, cfg.idleMs));

  // A rich error: a name over 400 characters is INVALID_ARGUMENT with BadRequest and ErrorInfo.
  try {
    await unary(insights, 'CreateInsight', { environment_id: env, insight: { name: 'x'.repeat(401) } }, auth);
    summary.error = { unexpected: 'the call succeeded' };
  } catch (err) {
    summary.error = decodeRichError(err, statusTypes);
  }

  summary.keepalive = { time_ms: cfg.keepaliveMs, idle_ms: cfg.idleMs, excess_pings: excessPings };
  summary.ok = true;
  for (const client of [insights, queries, sharing]) client.close();
  return summary;
}

run().then(
  (summary) => process.stdout.write(`${JSON.stringify(summary)}\n`),
  (err) => {
    const decoded = err && err.code !== undefined ? { code: err.code, message: err.details } : null;
    process.stdout.write(`${JSON.stringify({ ok: false, failure: String(err && err.stack ? err.stack : err), grpc: decoded })}\n`);
    process.exitCode = 1;
  },
);
