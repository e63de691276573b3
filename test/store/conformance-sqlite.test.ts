import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { storeConformance, type ConformanceFactory } from './conformance.js';

/** Each store a new file in `dir`; a peer is a second connection to the same file (another process). */
function sqliteFactory(dir: string): ConformanceFactory {
  const files = new WeakMap<Store, string>();
  let made = 0;
  const openFile = async (file: string): Promise<Store> => {
    const store = await openSqliteStore(file);
    files.set(store, file);
    return store;
  };
  return {
    open: () => openFile(path.join(dir, `store-${++made}.db`)),
    openPeer: (store) => {
      const file = files.get(store);
      if (file === undefined) throw new Error('openPeer: not a store this factory opened');
      return openFile(file);
    },
    // A writer that finds the write lock taken waits busy_timeout, blocking the thread, then is busy.
    busyUnderContention: true,
    // exclusive() is per store: SQLite serializes writers anyway.
    exclusiveAcrossPeers: false,
  };
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-conformance-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
storeConformance(t, 'sqlite', sqliteFactory(dir));
