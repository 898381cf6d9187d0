import { get } from "node:http";
import { connect } from "node:net";

/** Resolves true once a TCP connection to `host:port` opens; rejects when it fails or takes longer than `timeoutMs`. */
export function probeTcp(host: string, port: number, timeoutMs = 1_000): Promise<true> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("timeout", () => {
      socket.destroy();
      reject(new Error(`connecting to ${host}:${port} took longer than ${timeoutMs}ms`));
    });
    socket.once("error", (err) => {
      socket.destroy();
      reject(err);
    });
  });
}

/** The status and body of an HTTP answer. */
export interface HttpAnswer {
  status: number;
  body: string;
}

/**
 * GETs `url` on a fresh connection (no keep-alive agent, so nothing lingers towards a server that is
 * killed later); rejects on network errors or after `timeoutMs`.
 */
export function httpGet(url: string, timeoutMs = 2_000): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const request = get(url, { agent: false, timeout: timeoutMs }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.once("error", reject);
      response.once("end", () =>
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
      );
    });
    request.once("timeout", () => request.destroy(new Error(`GET ${url} took longer than ${timeoutMs}ms`)));
    request.once("error", reject);
  });
}
