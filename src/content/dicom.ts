import dicomParser from 'dicom-parser';
import { GatewayError } from '../errors/catalogue.js';

/** How much of a DICOM file is read for its header: the elements before the pixel data. */
export const DICOM_HEADER_BYTES = 256 * 1024;

/** What a Media takes from a DICOM Part 10 header (seed 000: "image/dicom (metadata only)"). */
export interface DicomFacts {
  readonly rows?: number;
  readonly columns?: number;
  readonly frames?: number;
  readonly modality?: string;
  readonly deviceSerial?: string;
  readonly deviceModel?: string;
}

/**
 * Reads the header of a DICOM Part 10 file (its first bytes, up to the pixel data) with
 * dicom-parser: Rows, Columns, Number of Frames, Modality, the device's serial number and model.
 * A file whose header cannot be read there is refused: the Media would describe nothing checked.
 */
export function dicomFacts(head: Uint8Array): DicomFacts {
  let ds: ReturnType<typeof dicomParser.parseDicom>;
  try {
    ds = dicomParser.parseDicom(head, { untilTag: 'x7fe00010' });
  } catch (err) {
    throw new GatewayError('UNSUPPORTED_MEDIA', `the DICOM header could not be read in the first ${DICOM_HEADER_BYTES / 1024} KiB`, {
      cause: err,
    });
  }
  const text = (tag: string) => {
    const v = ds.string(tag)?.trim();
    return v ? v.slice(0, 64) : undefined;
  };
  const rows = ds.uint16('x00280010');
  const columns = ds.uint16('x00280011');
  const frames = ds.intString('x00280008');
  const modality = text('x00080060');
  const deviceSerial = text('x00181000');
  const deviceModel = text('x00081090');
  return {
    ...(rows !== undefined ? { rows } : {}),
    ...(columns !== undefined ? { columns } : {}),
    // A single-frame image has no Number of Frames: one frame.
    ...(frames !== undefined && Number.isSafeInteger(frames) && frames > 0 ? { frames } : rows !== undefined ? { frames: 1 } : {}),
    ...(modality && /^[A-Z0-9 _]{1,16}$/.test(modality) ? { modality } : {}),
    ...(deviceSerial ? { deviceSerial } : {}),
    ...(deviceModel ? { deviceModel } : {}),
  };
}
