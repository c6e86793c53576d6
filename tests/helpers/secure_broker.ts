/**
 * Secured brokers for the TLS and auth tests, from the same Kafka jars as the local
 * broker: a private CA made with openssl at test time, then one KRaft node that
 * speaks only SASL_SSL (SCRAM-SHA-512, users created by `kafka-storage format
 * --add-scram`) or only SSL with `ssl.client.auth=required` (mTLS). Each listens on
 * 127.0.0.1 on free ports and lives in its own temporary folder, removed on dispose.
 *
 * Kafka reads the PEM files itself (`ssl.keystore.type=PEM`): no keytool, no JKS.
 */

import assert from "node:assert/strict";
import { decodeTrade } from "../../lib/trade.ts";
import { type NativeBroker, startNativeBroker } from "../../tools/broker/native.ts";
import { ROOT } from "../../tools/scripts.ts";
import type { Kept } from "./processes.ts";
import { freePortPair } from "./ports.ts";

/** The files a test hands to the scripts (paths), all in one temporary folder. */
export interface Pki {
  readonly dir: string;
  /** The private CA's certificate: KAFKA_SSL_CA. */
  readonly ca: string;
  /** A client certificate and its key, signed by the CA: KAFKA_SSL_CERT, KAFKA_SSL_KEY. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** The broker's key and certificate in one PEM file (its keystore). */
  readonly serverKeystore: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, `openssl ${args[0]}: ${new TextDecoder().decode(stderr)}`);
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** A certificate for `name`, signed by the CA in `dir`, with the extensions in `ext`. */
async function issue(dir: string, name: string, ext: string): Promise<void> {
  await Deno.writeTextFile(`${dir}/${name}.ext`, ext);
  await openssl(dir, [
    "req",
    ...EC_KEY,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=market-stream test ${name}`,
  ]);
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
    "-out",
    `${name}.pem`,
  ]);
}

/**
 * A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate,
 * in a temporary folder removed on dispose.
 */
export async function makePki(): Promise<Pki & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "market-stream-pki-" });
  await openssl(dir, [
    "req",
    "-x509",
    ...EC_KEY,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=market-stream test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  // The broker's certificate also serves as its own client certificate (inter-broker).
  await issue(
    dir,
    "server",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  await issue(dir, "client", "extendedKeyUsage=clientAuth\n");
  const serverKeystore = `${dir}/server-keystore.pem`;
  await Deno.writeTextFile(
    serverKeystore,
    await Deno.readTextFile(`${dir}/server.key`) + await Deno.readTextFile(`${dir}/server.pem`),
  );
  return {
    dir,
    ca: `${dir}/ca.pem`,
    clientCert: `${dir}/client.pem`,
    clientKey: `${dir}/client.key`,
    serverKeystore,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}

export type Security = "sasl_ssl" | "mtls";

/** The SCRAM user the SASL_SSL broker knows; the password is made per run. */
export const SCRAM_USER = "market-stream";

/**
 * One secured KRaft node: its only client listener is SASL_SSL or SSL (mTLS); the
 * controller listener stays on loopback in plain text, as in the local broker.
 */
export class SecureBroker {
  readonly port = freePortPair();
  readonly brokers = `127.0.0.1:${this.port}`;
  readonly password = crypto.randomUUID().replaceAll("-", "");
  #dir = "";
  #broker: NativeBroker | undefined;

  constructor(readonly security: Security, readonly pki: Pki) {}

  /** The variables the scripts (and the independent reader) need for this broker. */
  env(): Record<string, string> {
    const env: Record<string, string> = { KAFKA_BROKERS: this.brokers, KAFKA_SSL_CA: this.pki.ca };
    if (this.security === "mtls") {
      return { ...env, KAFKA_SSL_CERT: this.pki.clientCert, KAFKA_SSL_KEY: this.pki.clientKey };
    }
    return {
      ...env,
      KAFKA_SASL_MECHANISM: "scram-sha-512",
      KAFKA_SASL_USERNAME: SCRAM_USER,
      KAFKA_SASL_PASSWORD: this.password,
    };
  }

  async start(): Promise<void> {
    this.#dir = await Deno.makeTempDir({ prefix: `market-stream-${this.security}-` });
    const classpath = await Deno.readTextFile(`${ROOT}.kafka/classpath.txt`)
      .then((text) => text.trim(), () => undefined);
    const read = (path: string) => Deno.readTextFile(path);
    this.#broker = await startNativeBroker({
      port: this.port,
      dir: this.#dir,
      classpath,
      properties: this.#properties(),
      formatArgs: this.security === "sasl_ssl"
        ? ["--add-scram", `SCRAM-SHA-512=[name=${SCRAM_USER},password=${this.password}]`]
        : [],
      probeTls: {
        caCerts: [await read(this.pki.ca)],
        ...this.security === "mtls"
          ? { cert: await read(this.pki.clientCert), key: await read(this.pki.clientKey) }
          : {},
      },
    });
  }

  #properties(): Record<string, string> {
    const listener = this.security === "sasl_ssl" ? "SASL_SSL" : "SSL";
    const common = {
      listeners: `${listener}://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${this.port + 1}`,
      "advertised.listeners": `${listener}://127.0.0.1:${this.port}`,
      "listener.security.protocol.map": `${listener}:${listener},CONTROLLER:PLAINTEXT`,
      "inter.broker.listener.name": listener,
      "ssl.keystore.type": "PEM",
      "ssl.keystore.location": this.pki.serverKeystore,
      "ssl.truststore.type": "PEM",
      "ssl.truststore.location": this.pki.ca,
    };
    if (this.security === "mtls") return { ...common, "ssl.client.auth": "required" };
    return {
      ...common,
      "sasl.enabled.mechanisms": "SCRAM-SHA-512",
      "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
      "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
        "org.apache.kafka.common.security.scram.ScramLoginModule required " +
        `username="${SCRAM_USER}" password="${this.password}";`,
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#broker?.stop("SIGKILL");
    if (this.#dir !== "") await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

const READER = new URL("./read_topic.py", import.meta.url);

/**
 * Every record of `topic`, read by kafka-python (Debian's python3-kafka) with the
 * same variables the scripts got: an independent client, not kafkajs.
 */
export async function readSecuredTopic(
  env: Record<string, string>,
  topic: string,
): Promise<Kept[]> {
  const output = await new Deno.Command("/usr/bin/python3", {
    args: [decodeURIComponent(READER.pathname), topic],
    env,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  return new TextDecoder().decode(output.stdout).split("\n").filter((line) => line !== "")
    .map((line) => {
      const { partition, offset, key, ts, headers, value } = JSON.parse(line);
      return { partition, offset, key, ts, headers, record: decodeTrade(value) };
    });
}
