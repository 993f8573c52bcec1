// Runs AWS SDK for JavaScript v3 commands against one endpoint and prints what the SDK made of
// each answer, as JSON, for tests/integration/test_js_sdk.py to assert on.
//
// stdin:  {"endpoint": url, "region": r, "credentials": {accessKeyId, secretAccessKey},
//          "calls": [{"service": "ecr" | "iam" | "sts", "command": "CreateRepository",
//                     "input": {...}, "credentials"?: {...}}]}
// stdout: one entry per call, in order: {"status", "requestId", "output"} when it succeeded,
//         {"status", "requestId", "error": {"name", "message", "fault", "modeled"}} when it threw.
// Calls run one after another and every call runs, whatever the ones before it did.
"use strict";

const MODULES = {
  ecr: require("@aws-sdk/client-ecr"),
  iam: require("@aws-sdk/client-iam"),
  sts: require("@aws-sdk/client-sts"),
};
const CLIENT_CLASSES = { ecr: "ECRClient", iam: "IAMClient", sts: "STSClient" };

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (chunk) => chunks.push(chunk));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

function makeClient(request, service, credentials) {
  const module = MODULES[service];
  if (!module) throw new Error(`unknown service ${service}`);
  // One attempt: a retry would hide the very answer the test is about.
  return new module[CLIENT_CLASSES[service]]({
    endpoint: request.endpoint,
    region: request.region,
    credentials,
    maxAttempts: 1,
  });
}

function describeError(module, error) {
  const exceptionClass = module[error.name];
  return {
    name: error.name,
    message: error.message,
    fault: error.$fault ?? null,
    // True when the SDK recognised the error as one its service model declares.
    modeled: typeof exceptionClass === "function" && error instanceof exceptionClass,
  };
}

async function runCall(request, call) {
  const module = MODULES[call.service];
  const client = makeClient(request, call.service, call.credentials ?? request.credentials);
  const Command = module[`${call.command}Command`];
  if (typeof Command !== "function") throw new Error(`unknown command ${call.service}:${call.command}`);
  try {
    const { $metadata, ...output } = await client.send(new Command(call.input ?? {}));
    return { status: $metadata.httpStatusCode, requestId: $metadata.requestId ?? null, output };
  } catch (error) {
    if (!error.$metadata) throw error; // not an answer from the service: let it fail loudly
    return {
      status: error.$metadata.httpStatusCode ?? null,
      requestId: error.$metadata.requestId ?? null,
      error: describeError(module, error),
    };
  } finally {
    client.destroy();
  }
}

async function main() {
  const request = JSON.parse(await readStdin());
  const results = [];
  for (const call of request.calls) {
    results.push(await runCall(request, call));
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
