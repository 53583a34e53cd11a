import type { StorageConfig } from '../config/types.js';
import { readSecret } from '../lib/secret.js';
import type { BlobStore } from './blob-store.js';
import { checkKeyRing, type KeyRing } from './encryption.js';
import { FilesystemBlobStore } from './filesystem.js';

export function keyRingOf(enc: NonNullable<StorageConfig['filesystem']['encryption']>, env: NodeJS.ProcessEnv = process.env): KeyRing {
  const keys = new Map<string, Buffer>();
  for (const k of enc.keys) {
    const text = readSecret(k, `storage.filesystem.encryption key "${k.id}"`, env);
    const key = Buffer.from(text, 'base64');
    if (key.length !== 32 || key.toString('base64') !== text.replace(/\s+/g, '')) {
      throw new Error(`storage.filesystem.encryption key "${k.id}" must be 32 bytes, base64-encoded (e.g. \`openssl rand -base64 32\`)`);
    }
    keys.set(k.id, key);
  }
  const ring = { activeKeyId: enc.activeKey, keys };
  checkKeyRing(ring);
  return ring;
}

/**
 * The configured BlobStore. The cloud SDKs are imported only when their driver is chosen: they
 * are large, and a filesystem deployment should not pay for them at start.
 */
export async function createBlobStore(cfg: StorageConfig, env: NodeJS.ProcessEnv = process.env): Promise<BlobStore> {
  switch (cfg.driver) {
    case 'filesystem': {
      const enc = cfg.filesystem.encryption;
      return new FilesystemBlobStore({ directory: cfg.filesystem.directory, ...(enc ? { encryption: keyRingOf(enc, env) } : {}) });
    }
    case 's3': {
      const s3 = cfg.s3!;
      const { S3BlobStore } = await import('./s3.js');
      const credentials =
        s3.accessKeyIdEnv && s3.secretAccessKeyEnv
          ? {
              accessKeyId: readSecret({ env: s3.accessKeyIdEnv }, 'storage.s3.accessKeyIdEnv', env),
              secretAccessKey: readSecret({ env: s3.secretAccessKeyEnv }, 'storage.s3.secretAccessKeyEnv', env),
            }
          : undefined;
      return new S3BlobStore({
        bucket: s3.bucket,
        region: s3.region,
        forcePathStyle: s3.forcePathStyle,
        prefix: s3.prefix,
        partSizeBytes: s3.partSizeBytes,
        queueSize: s3.queueSize,
        ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
        ...(credentials ? { credentials } : {}),
        ...(s3.serverSideEncryption ? { serverSideEncryption: s3.serverSideEncryption } : {}),
        ...(s3.sseKmsKeyId ? { sseKmsKeyId: s3.sseKmsKeyId } : {}),
      });
    }
    case 'azure': {
      const az = cfg.azure!;
      const { AzureBlobStore } = await import('./azure.js');
      return new AzureBlobStore({
        container: az.container,
        prefix: az.prefix,
        blockSizeBytes: az.blockSizeBytes,
        concurrency: az.concurrency,
        ...(az.connectionStringEnv
          ? { connectionString: readSecret({ env: az.connectionStringEnv }, 'storage.azure.connectionStringEnv', env) }
          : {}),
        ...(az.accountKeyEnv
          ? {
              accountName: az.accountName!,
              accountKey: readSecret({ env: az.accountKeyEnv }, 'storage.azure.accountKeyEnv', env),
              ...(az.url ? { url: az.url } : {}),
            }
          : {}),
        ...(az.sasTokenEnv ? { url: az.url!, sasToken: readSecret({ env: az.sasTokenEnv }, 'storage.azure.sasTokenEnv', env) } : {}),
      });
    }
  }
}
