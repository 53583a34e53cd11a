// Raw Binary through the running gateway with `storage.driver: azure`, against azurite.
import { BlobServiceClient, BlockBlobClient } from '@azure/storage-blob';
import { randomBytes } from 'node:crypto';
import { text } from 'node:stream/consumers';
import t, { type Test } from 'tap';
import { startAzurite } from '../helpers/azurite.js';
import { binaryStoreScenarios, type StoreUnderTest } from '../helpers/binary-scenarios.js';
import { integrityScenario, type CorruptibleStore } from '../helpers/integrity-scenario.js';
import { sweepScenario } from '../helpers/sweep-scenario.js';

// The smallest block the config schema allows, so a few hundred KiB go up as several blocks.
const BLOCK = 64 * 1024;
const PREFIX = 'gw/';

// Blocks staged by anyone in this process (the gateway runs in it): the server cannot be asked
// afterwards about blocks that were staged and then cleaned up.
let staged = 0;
const stageBlock = BlockBlobClient.prototype.stageBlock;
BlockBlobClient.prototype.stageBlock = function (this: BlockBlobClient, ...args: Parameters<BlockBlobClient['stageBlock']>) {
  staged++;
  return stageBlock.apply(this, args);
};
t.teardown(() => {
  BlockBlobClient.prototype.stageBlock = stageBlock;
});

const azure = async (t: Test): Promise<StoreUnderTest & CorruptibleStore> => {
  // A server per test: one of them stops it.
  const az = await startAzurite(t);
  const container = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient('fhir-blobs');
  await container.create();
  // The gateway reads the key from a variable the config names, never from the config.
  const env = `FBG_TEST_AZURE_KEY_${randomBytes(6).toString('hex').toUpperCase()}`;
  process.env[env] = az.accountKey;
  t.teardown(() => {
    delete process.env[env];
  });
  const names = async (includeUncommitedBlobs: boolean): Promise<string[]> => {
    const out: string[] = [];
    for await (const b of container.listBlobsFlat({ includeUncommitedBlobs })) out.push(b.name);
    return out.sort();
  };
  return {
    storage: {
      driver: 'azure',
      azure: {
        container: container.containerName,
        prefix: PREFIX,
        accountName: az.accountName,
        accountKeyEnv: env,
        url: az.blobEndpoint,
        blockSizeBytes: BLOCK,
      },
    },
    prefix: PREFIX,
    partSize: BLOCK,
    residue: () => names(true),
    corrupt: async (id: string, at: number) => {
      const blob = container.getBlockBlobClient(`${PREFIX}blobs/${id}`);
      const b = await blob.downloadToBuffer();
      b[at] ^= 0x04;
      await blob.uploadData(b);
    },
    objects: () => names(false),
    record: async (id) =>
      JSON.parse(await text((await container.getBlobClient(`${PREFIX}meta/${id}.json`).download()).readableStreamBody!)) as Record<
        string,
        unknown
      >,
    parts: async (id) =>
      (await container.getBlockBlobClient(`${PREFIX}blobs/${id}`).getBlockList('committed')).committedBlocks?.length ?? 0,
    piecesStarted: () => staged,
    stop: () => az.stop(),
  };
};

binaryStoreScenarios(t, 'azure', azure);
integrityScenario(t, 'azure', azure);
sweepScenario(t, 'azure', azure);
