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
  // dicom-parser throws strings as well as Errors, from parsing and from reading elements later:
  // all of it is one refusal.
  try {
    return readFacts(head);
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw new GatewayError('UNSUPPORTED_MEDIA', `the DICOM header could not be read in the first ${DICOM_HEADER_BYTES / 1024} KiB`, {
      cause: err instanceof Error ? err : new Error(String(err)),
    });
  }
}

function readFacts(head: Uint8Array): DicomFacts {
  const ds = dicomParser.parseDicom(head, {
    untilTag: 'x7fe00010',
    // A deflated data set would be inflated whole, unbounded (a bomb): not read.
    inflater: () => {
      throw new GatewayError('UNSUPPORTED_MEDIA', 'deflated DICOM (transfer syntax 1.2.840.10008.1.2.1.99) is not read');
    },
  });
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
