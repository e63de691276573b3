// One face engine per worker thread: the pool (src/services/face-pool.ts) sends one job at a time
// and waits for its answer, so this loop never queues; the bounded queue lives in the pool.
import { parentPort, workerData } from 'node:worker_threads';
import { loadEngine } from './engine.mjs';

let engine;
try {
  engine = await loadEngine(workerData);
  parentPort.postMessage({ type: 'ready', versions: engine.versions });
} catch (err) {
  parentPort.postMessage({ type: 'failed', message: String(err?.message ?? err) });
  process.exit(1);
}

parentPort.on('message', async (msg) => {
  try {
    const bytes = new Uint8Array(msg.bytes);
    const result = msg.op === 'faces' ? await engine.faces(bytes) : await engine.describe(bytes);
    if (result.ok && result.descriptor) {
      parentPort.postMessage({ type: 'result', id: msg.id, ...result }, [result.descriptor.buffer]);
    } else {
      parentPort.postMessage({ type: 'result', id: msg.id, ...result });
    }
  } catch (err) {
    parentPort.postMessage({ type: 'result', id: msg.id, ok: false, code: 'internal', message: String(err?.message ?? err) });
  }
});
