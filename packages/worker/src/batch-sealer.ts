import { type Signer, sealBatch } from "@arbiter/trust";

interface Pending {
  readonly body: string;
  readonly resolve: (sealed: string) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Collects the records made during one turn of the event loop and seals them with one signature
 * (a Merkle root; each record keeps its own proof). Under load a turn handles many requests, so the
 * signature's cost is shared; when idle a batch is one record and costs one extra tick.
 */
export class BatchSealer {
  readonly #signer: Signer;
  readonly #maxBatch: number;
  #pending: Pending[] = [];
  #scheduled = false;

  constructor(signer: Signer, maxBatch = 256) {
    this.#signer = signer;
    this.#maxBatch = maxBatch;
  }

  /** Resolves with `body` sealed (proof and signature appended), once its batch is signed. */
  seal(body: string): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ body, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        queueMicrotask(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const pending = this.#pending;
    this.#pending = [];
    for (let start = 0; start < pending.length; start += this.#maxBatch) {
      const batch = pending.slice(start, start + this.#maxBatch);
      try {
        const sealed = sealBatch(
          batch.map((p) => p.body),
          this.#signer,
        );
        batch.forEach((p, i) => {
          p.resolve(sealed[i]!);
        });
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
  }
}
