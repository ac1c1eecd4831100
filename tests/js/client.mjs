// One Matrix user on one device, as Element is since 2026: matrix-js-sdk with Rust crypto,
// driven by Crieur's tests through JSON lines.
//
// stdin: one request a line, {"id": 1, "op": "login", ...arguments}.
// stdout: one answer per request, {"id": 1, "ok": true, "result": ...} or
// {"id": 1, "ok": false, "error": "..."}, and pushed lines {"push": "message", "message": {...}}
// whenever a message of a room settles (decrypted, or failed to).
// stderr: the SDK's logs, for the test's error messages.
// The process ends when stdin closes, so that it never outlives the test that started it.

import { format } from "node:util";
import { createInterface } from "node:readline";

// stdout carries the protocol alone: console methods write to stderr, before the SDK binds
// them. Rust crypto traces at debug level whatever the SDK's logger says, so the level is
// applied here too (CRIEUR_JS_LOG_LEVEL, default warn).
const LEVELS = ["trace", "debug", "info", "warn", "error"];
const threshold = Math.max(0, LEVELS.indexOf(process.env.CRIEUR_JS_LOG_LEVEL || "warn"));
for (const [name, level] of [
  ["trace", "trace"],
  ["debug", "debug"],
  ["log", "info"],
  ["info", "info"],
  ["warn", "warn"],
  ["error", "error"],
]) {
  console[name] =
    LEVELS.indexOf(level) < threshold
      ? () => {}
      : (...args) => process.stderr.write(format(...args) + "\n");
}

const sdk = await import("matrix-js-sdk");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");
const { logger } = await import("matrix-js-sdk/lib/logger.js");
logger.setLevel(LEVELS[threshold]);

const { ClientEvent, RoomEvent, MatrixEventEvent, KnownMembership } = sdk;
const {
  EventShieldColour,
  EventShieldReason,
  AllDevicesIsolationMode,
  OnlySignedDevicesIsolationMode,
} = cryptoApi;

let client = null;
let account = null; // {homeserver, user, password, user_id, device_id, access_token}
const messages = new Map(); // event id -> MatrixEvent, in the order they arrived
const settled = new Map(); // event id -> last pushed description, as JSON

function write(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

function need(condition, message) {
  if (!condition) throw new Error(message);
}

function requireClient() {
  need(client !== null, "log in first");
  return client;
}

function requireCrypto() {
  const crypto = requireClient().getCrypto();
  need(crypto !== undefined, "start the client first (Rust crypto is set up there)");
  return crypto;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(check, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`no ${what} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

function isMessage(event) {
  return event.getType() === "m.room.message" || event.isEncrypted();
}

function shieldName(colour) {
  return { [EventShieldColour.NONE]: "none", [EventShieldColour.GREY]: "grey", [EventShieldColour.RED]: "red" }[
    colour
  ];
}

async function describe(event) {
  await requireClient().decryptEventIfNeeded(event);
  const failed = event.isDecryptionFailure();
  const content = failed ? {} : event.getContent();
  let shield = null;
  if (event.isEncrypted() && !failed) {
    const info = await requireCrypto().getEncryptionInfoForEvent(event);
    if (info !== null) {
      shield = {
        colour: shieldName(info.shieldColour),
        reason: info.shieldReason === null ? null : EventShieldReason[info.shieldReason],
      };
    }
  }
  const relation = content["m.relates_to"] ?? {};
  return {
    event_id: event.getId(),
    room_id: event.getRoomId(),
    sender: event.getSender(),
    sender_device: event.getWireContent().device_id ?? null,
    encrypted: event.isEncrypted(),
    type: event.getType(),
    msgtype: content.msgtype ?? null,
    body: content.body ?? null,
    in_reply_to: relation["m.in_reply_to"]?.event_id ?? null,
    failure: failed ? (event.decryptionFailureReason ?? "UNKNOWN_ERROR") : null,
    shield,
  };
}

async function pushIfChanged(event) {
  if (event.isBeingDecrypted() || event.shouldAttemptDecryption()) return;
  let description;
  try {
    description = await describe(event);
  } catch (error) {
    console.error("cannot describe", event.getId(), error);
    return;
  }
  const text = JSON.stringify(description);
  if (settled.get(description.event_id) === text) return;
  settled.set(description.event_id, text);
  write({ push: "message", message: description });
}

function watch(event) {
  if (!isMessage(event) || !event.getId() || event.getId().startsWith("~")) return;
  if (!messages.has(event.getId())) {
    messages.set(event.getId(), event);
    event.on(MatrixEventEvent.Decrypted, () => void pushIfChanged(event));
  }
  void pushIfChanged(event);
}

async function joined(roomId) {
  return until(
    () => requireClient().getRoom(roomId)?.getMyMembership() === KnownMembership.Join,
    `join of ${roomId} seen in a sync`,
  );
}

function isolation(mode) {
  if (mode === "only_signed") return new OnlySignedDevicesIsolationMode();
  if (mode === "all") return new AllDevicesIsolationMode(false);
  throw new Error(`unknown isolation mode ${JSON.stringify(mode)} (only_signed or all)`);
}

async function ownStatus() {
  const crypto = requireCrypto();
  const device = await crypto.getDeviceVerificationStatus(account.user_id, account.device_id);
  const identity = await crypto.getUserVerificationStatus(account.user_id);
  return {
    user_id: account.user_id,
    device_id: account.device_id,
    cross_signing_ready: await crypto.isCrossSigningReady(),
    device_signed_by_owner: device?.signedByOwner ?? false,
    device_cross_signing_verified: device?.crossSigningVerified ?? false,
    identity_verified: identity.isCrossSigningVerified(),
  };
}

const operations = {
  async login({ homeserver, user, password, device_name = "crieur-test-js" }) {
    need(client === null, "already logged in");
    const anonymous = sdk.createClient({ baseUrl: homeserver });
    const response = await anonymous.loginRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user },
      password,
      initial_device_display_name: device_name,
    });
    account = {
      homeserver,
      user,
      password,
      user_id: response.user_id,
      device_id: response.device_id,
      access_token: response.access_token,
    };
    client = sdk.createClient({
      baseUrl: homeserver,
      userId: response.user_id,
      deviceId: response.device_id,
      accessToken: response.access_token,
    });
    return { user_id: account.user_id, device_id: account.device_id, access_token: account.access_token };
  },

  async start({ isolation: mode = "all" }) {
    const matrix = requireClient();
    // In memory: each process is one device for one test, and Node has no IndexedDB.
    await matrix.initRustCrypto({ useIndexedDB: false });
    matrix.getCrypto().setDeviceIsolationMode(isolation(mode));
    matrix.on(RoomEvent.Timeline, (event, _room, toStartOfTimeline) => {
      if (!toStartOfTimeline) watch(event);
    });
    const ready = new Promise((resolve, reject) => {
      const listener = (state, _previous, data) => {
        if (state === "PREPARED" || state === "SYNCING") {
          matrix.off(ClientEvent.Sync, listener);
          resolve();
        } else if (state === "ERROR") {
          matrix.off(ClientEvent.Sync, listener);
          reject(data?.error ?? new Error("the first sync failed"));
        }
      };
      matrix.on(ClientEvent.Sync, listener);
    });
    await matrix.startClient({ initialSyncLimit: 50, lazyLoadMembers: false });
    await ready;
    return { user_id: account.user_id, device_id: account.device_id };
  },

  async cross_sign() {
    // As Element does at first log-in: a new identity whose keys this device holds, uploaded
    // through user-interactive auth with the password; the device signs itself with it, and
    // trusts it (the private keys are here), as after "verify with recovery key".
    const crypto = requireCrypto();
    await crypto.bootstrapCrossSigning({
      authUploadDeviceSigningKeys: async (makeRequest) => {
        await makeRequest({
          type: "m.login.password",
          identifier: { type: "m.id.user", user: account.user },
          password: account.password,
        });
      },
    });
    const status = await until(async () => {
      const current = await ownStatus();
      return current.cross_signing_ready && current.device_cross_signing_verified ? current : null;
    }, "cross-signed device");
    return status;
  },

  async cross_sign_device({ device_id }) {
    // Signs another device of this user with the self-signing key this device holds.
    await requireCrypto().crossSignDevice(device_id);
    return null;
  },

  async isolation({ mode }) {
    requireCrypto().setDeviceIsolationMode(isolation(mode));
    return null;
  },

  async whoami() {
    return ownStatus();
  },

  async create_room({ invite = [], encrypted = true, name = null }) {
    const initial_state = encrypted
      ? [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }]
      : [];
    const options = { preset: "private_chat", invite, initial_state };
    if (name !== null) options.name = name;
    const { room_id } = await requireClient().createRoom(options);
    await joined(room_id);
    return { room_id };
  },

  async invite({ room_id, user_id }) {
    await requireClient().invite(room_id, user_id);
    return null;
  },

  async join({ room_id }) {
    await requireClient().joinRoom(room_id);
    await joined(room_id);
    return null;
  },

  async membership({ room_id, user_id }) {
    return requireClient().getRoom(room_id)?.getMember(user_id)?.membership ?? null;
  },

  async send({ room_id, body, msgtype = "m.text" }) {
    const matrix = requireClient();
    await joined(room_id);
    const { event_id } = await matrix.sendMessage(room_id, { msgtype, body });
    return { event_id };
  },

  async messages({ room_id, sender = null }) {
    const chosen = [...messages.values()].filter(
      (event) => event.getRoomId() === room_id && (sender === null || event.getSender() === sender),
    );
    return Promise.all(chosen.map(describe));
  },

  async devices({ user_id }) {
    const crypto = requireCrypto();
    const map = await crypto.getUserDeviceInfo([user_id], true);
    const devices = [];
    for (const deviceId of (map.get(user_id) ?? new Map()).keys()) {
      const status = await crypto.getDeviceVerificationStatus(user_id, deviceId);
      devices.push({
        device_id: deviceId,
        signed_by_owner: status?.signedByOwner ?? false,
        cross_signing_verified: status?.crossSigningVerified ?? false,
      });
    }
    const identity = await crypto.getUserVerificationStatus(user_id);
    return {
      devices,
      identity_verified: identity.isCrossSigningVerified(),
      identity_was_verified: identity.wasCrossSigningVerified(),
      needs_user_approval: identity.needsUserApproval,
    };
  },

  async stop() {
    if (client !== null) client.stopClient();
    setImmediate(() => process.exit(0));
    return null;
  },
};

async function handle(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    write({ id: null, ok: false, error: `not JSON: ${line}` });
    return;
  }
  const { id, op, ...args } = request;
  const operation = Object.hasOwn(operations, op) ? operations[op] : null;
  if (operation === null) {
    write({ id, ok: false, error: `unknown operation ${JSON.stringify(op)}` });
    return;
  }
  try {
    write({ id, ok: true, result: (await operation(args)) ?? null });
  } catch (error) {
    const detail = error?.data ? ` ${JSON.stringify(error.data)}` : "";
    write({ id, ok: false, error: `${op}: ${error?.stack ?? error}${detail}` });
  }
}

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (line.trim()) void handle(line);
});
input.on("close", () => {
  if (client !== null) client.stopClient();
  process.exit(0);
});
