// What the gateway reads from a DICOM Part 10 header (content/dicom.ts), with dicom-parser.
import t from 'tap';
import { dicomFacts } from '../../src/content/dicom.js';
import { dicomFile } from '../helpers/dicom.js';

t.test('rows, columns, frames, modality and the device from a Part 10 header', async (t) => {
  const file = dicomFile({ rows: 512, columns: 256, frames: 120, modality: 'CT', serial: 'CT-Scanner-789', model: 'Scan 9000' });
  t.same(dicomFacts(file), {
    rows: 512,
    columns: 256,
    frames: 120,
    modality: 'CT',
    deviceSerial: 'CT-Scanner-789',
    deviceModel: 'Scan 9000',
  });
  t.same(dicomFacts(dicomFile({ rows: 64, columns: 64 })), { rows: 64, columns: 64, frames: 1 }, 'no Number of Frames: one frame');
  const headOnly = dicomFile({ rows: 8, columns: 8, pixelBytes: 1_000_000 }).subarray(0, 1024);
  t.same(dicomFacts(headOnly), { rows: 8, columns: 8, frames: 1 }, 'the header alone is enough: the pixel data is never read');
});

t.test('not a readable DICOM header: refused', async (t) => {
  t.throws(() => dicomFacts(Buffer.from('%PDF-1.7 not dicom')), { code: 'UNSUPPORTED_MEDIA' });
  const cut = dicomFile({ rows: 8, columns: 8, modality: 'MR' }).subarray(0, 150);
  t.throws(() => dicomFacts(cut), { code: 'UNSUPPORTED_MEDIA' }, 'cut inside the file meta group');
  t.throws(
    () => dicomFacts(dicomFile({ rows: 8, columns: 8, transferSyntax: '1.2.840.10008.1.2.1.99' })),
    { code: 'UNSUPPORTED_MEDIA', message: /deflated/ },
    'a deflated data set is never inflated (a bomb)',
  );
});
