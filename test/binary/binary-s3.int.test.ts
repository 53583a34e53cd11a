// Raw Binary through the running gateway with `storage.driver: s3`, against s3rver (SigV4 checked).
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { binaryStoreScenarios, type StoreUnderTest } from '../helpers/binary-scenarios.js';
import { integrityScenario, type CorruptibleStore } from '../helpers/integrity-scenario.js';
import { sweepScenario } from '../helpers/sweep-scenario.js';
import { startS3Server } from '../helpers/s3-server.js';

// The smallest part S3 (and the config schema) allows.
const PART = 5 * 1024 * 1024;
const PREFIX = 'gw/';

const s3 = async (t: Test): Promise<StoreUnderTest & CorruptibleStore> => {
  const srv = await startS3Server(t);
  // The gateway reads its credentials from variables the config names, never from the config.
  const env = `FBG_TEST_S3_${randomBytes(6).toString('hex').toUpperCase()}`;
  process.env[`${env}_ID`] = srv.credentials.accessKeyId;
  process.env[`${env}_SECRET`] = srv.credentials.secretAccessKey;
  t.teardown(() => {
    delete process.env[`${env}_ID`];
    delete process.env[`${env}_SECRET`];
  });
  const client = new S3Client({ region: 'us-east-1', endpoint: srv.endpoint, forcePathStyle: true, credentials: srv.credentials });
  t.teardown(() => client.destroy());
  const requestsTo = (method: string, key: string) => srv.requests.filter((r) => r.method === method && r.path === `/${srv.bucket}/${key}`);
  return {
    storage: {
      driver: 's3',
      s3: {
        bucket: srv.bucket,
        endpoint: srv.endpoint,
        forcePathStyle: true,
        prefix: PREFIX,
        accessKeyIdEnv: `${env}_ID`,
        secretAccessKeyEnv: `${env}_SECRET`,
        partSizeBytes: PART,
      },
    },
    prefix: PREFIX,
    partSize: PART,
    // s3rver keeps objects and in-progress multipart uploads as files: what is on its disk is all there is.
    residue: async () => srv.files(),
    corrupt: async (id: string, at: number) => {
      const Key = `${PREFIX}blobs/${id}`;
      const got = await client.send(new GetObjectCommand({ Bucket: srv.bucket, Key }));
      const b = Buffer.from(await got.Body!.transformToByteArray());
      b[at] ^= 0x04;
      await client.send(new PutObjectCommand({ Bucket: srv.bucket, Key, Body: b }));
    },
    objects: async () =>
      ((await client.send(new ListObjectsV2Command({ Bucket: srv.bucket }))).Contents ?? []).map((o) => o.Key ?? '').sort(),
    record: async (id) =>
      JSON.parse(
        (await (
          await client.send(new GetObjectCommand({ Bucket: srv.bucket, Key: `${PREFIX}meta/${id}.json` }))
        ).Body?.transformToString()) ?? '',
      ) as Record<string, unknown>,
    parts: async (id) =>
      requestsTo('PUT', `${PREFIX}blobs/${id}`).filter((r) => r.query.partNumber !== undefined && r.status === 200).length,
    piecesStarted: () => srv.requests.filter((r) => r.method === 'POST' && 'uploads' in r.query).length,
    stop: () => srv.stop(),
  };
};

binaryStoreScenarios(t, 's3', s3);
integrityScenario(t, 's3', s3);
sweepScenario(t, 's3', s3);
