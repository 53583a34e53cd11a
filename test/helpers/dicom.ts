// A DICOM Part 10 file built byte by byte (explicit VR little endian), for tests of what the
// gateway reads from a header: preamble, DICM, the file meta group, then the data set.

function element(group: number, elem: number, vr: string, value: Buffer): Buffer {
  const v = value.length % 2 === 0 ? value : Buffer.concat([value, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
  const tag = Buffer.alloc(4);
  tag.writeUInt16LE(group, 0);
  tag.writeUInt16LE(elem, 2);
  if (['OB', 'OW', 'OF', 'SQ', 'UT', 'UN'].includes(vr)) {
    const len = Buffer.alloc(6);
    len.writeUInt32LE(v.length, 2);
    return Buffer.concat([tag, Buffer.from(vr, 'latin1'), len, v]);
  }
  const len = Buffer.alloc(2);
  len.writeUInt16LE(v.length, 0);
  return Buffer.concat([tag, Buffer.from(vr, 'latin1'), len, v]);
}

const us = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n, 0);
  return b;
};
const str = (s: string) => Buffer.from(s, 'latin1');

export interface DicomSpec {
  rows: number;
  columns: number;
  frames?: number;
  modality?: string;
  serial?: string;
  model?: string;
  /** Bytes of pixel data after the header. */
  pixelBytes?: number;
  /** The transfer syntax UID the file meta group names (explicit VR little endian by default). */
  transferSyntax?: string;
}

export function dicomFile(spec: DicomSpec): Buffer {
  const meta = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    element(0x0002, 0x0002, 'UI', str('1.2.840.10008.5.1.4.1.1.2')),
    element(0x0002, 0x0003, 'UI', str('1.2.3.4.5.6.7.8')),
    element(0x0002, 0x0010, 'UI', str(spec.transferSyntax ?? '1.2.840.10008.1.2.1')),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(meta.length, 0);
  const data = Buffer.concat([
    ...(spec.modality ? [element(0x0008, 0x0060, 'CS', str(spec.modality))] : []),
    ...(spec.model ? [element(0x0008, 0x1090, 'LO', str(spec.model))] : []),
    ...(spec.serial ? [element(0x0018, 0x1000, 'LO', str(spec.serial))] : []),
    ...(spec.frames !== undefined ? [element(0x0028, 0x0008, 'IS', str(String(spec.frames)))] : []),
    element(0x0028, 0x0010, 'US', us(spec.rows)),
    element(0x0028, 0x0011, 'US', us(spec.columns)),
    element(0x7fe0, 0x0010, 'OB', Buffer.alloc(spec.pixelBytes ?? 4096, 7)),
  ]);
  return Buffer.concat([Buffer.alloc(128), str('DICM'), element(0x0002, 0x0000, 'UL', groupLength), meta, data]);
}
