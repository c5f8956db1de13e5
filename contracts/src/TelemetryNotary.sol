// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title TelemetryNotary
/// @notice On-chain evidence of QKD-authenticated IoT telemetry: records written in
///         batches (one transaction, many records) and Merkle roots anchoring large
///         batches whose inclusion proofs travel in the notary's receipts.
/// @dev `payloadHash` is keccak256(salt || payload) with a per-record 32-byte salt that
///      only the receipt holder knows, so low-entropy telemetry cannot be guessed from
///      the chain. Device IDs use the DeviceRegistry encoding (UTF-8, zero-padded to 32
///      bytes). Merkle leaves follow OpenZeppelin's StandardMerkleTree convention:
///      keccak256(bytes.concat(keccak256(abi.encode(recordId, deviceId, sequence,
///      payloadHash, mode)))) with sorted-pair hashing ({leafHash}).
contract TelemetryNotary is AccessControl {
    /// @notice May write records and anchor roots (the notary service account).
    bytes32 public constant NOTARY_ROLE = keccak256("NOTARY_ROLE");

    /// @notice How the telemetry was protected between device and notary.
    enum SecurityMode {
        Unspecified, // never stored; a record with it is refused
        OTP, // one-time pad + one-time MAC: information-theoretic security
        AEAD // AES-256-GCM under a QKD session key: computational security
    }

    struct RecordInput {
        bytes32 recordId;
        bytes32 deviceId;
        uint64 sequence;
        bytes32 payloadHash;
        SecurityMode mode;
    }

    struct Record {
        bytes32 deviceId;
        bytes32 payloadHash;
        uint64 sequence;
        uint64 recordedAt;
        uint64 blockNumber;
        SecurityMode mode;
        bool payloadPublished;
    }

    struct Anchor {
        bytes32 firstRecordId;
        bytes32 lastRecordId;
        uint64 count;
        uint64 anchoredAt;
        uint64 blockNumber;
    }

    /// @notice The DeviceRegistry this notary's device IDs refer to.
    address public immutable registry;

    /// @dev A record as stored: the payload hash and one word packed by hand, so that
    ///      writing a record is two plain SSTOREs (bits 0-63 sequence, 64-127 recordedAt,
    ///      128-191 blockNumber, 192-199 mode, 200 payloadPublished, 224-255 the device's
    ///      1-based index in `_devices`). Storing the 32-byte device ID once per device
    ///      instead of once per record saves a third of a record's storage writes.
    struct StoredRecord {
        bytes32 payloadHash;
        uint256 meta;
    }

    mapping(bytes32 recordId => StoredRecord) private _records;
    /// @dev Device IDs in order of their first record; `_deviceIndex` is 1-based into it.
    bytes32[] private _devices;
    mapping(bytes32 deviceId => uint256) private _deviceIndex;
    mapping(bytes32 root => Anchor) private _anchors;

    event RecordStored(
        bytes32 indexed deviceId, bytes32 indexed recordId, uint64 sequence, bytes32 payloadHash, SecurityMode mode
    );
    event PayloadPublished(bytes32 indexed recordId, bytes payload);
    event RecordSkipped(bytes32 indexed deviceId, bytes32 indexed recordId);
    event BatchRecorded(uint256 recorded, uint256 skipped);
    event RootAnchored(bytes32 indexed root, uint64 count, bytes32 firstRecordId, bytes32 lastRecordId);
    event AnchorSkipped(bytes32 indexed root);

    error InvalidRecord(uint256 index);
    error PayloadCountMismatch(uint256 records, uint256 payloads);
    error InvalidAnchor();
    error TooManyDevices();

    constructor(address admin, address notary, address registry_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(NOTARY_ROLE, notary);
        registry = registry_;
    }

    /// @notice Store many records in one transaction. A record whose ID is already
    ///         stored is skipped with {RecordSkipped} instead of reverting the batch, so
    ///         a retried batch is idempotent.
    /// @param payloads empty (hash-only notarization) or one entry per record; a
    ///        non-empty entry is published in {PayloadPublished}, never stored.
    /// @return recorded how many records were new.
    function recordBatch(RecordInput[] calldata records, bytes[] calldata payloads)
        external
        onlyRole(NOTARY_ROLE)
        returns (uint256 recorded)
    {
        uint256 length = records.length;
        bool publishing = payloads.length != 0;
        if (publishing && payloads.length != length) revert PayloadCountMismatch(length, payloads.length);
        // recordedAt and blockNumber are the same for every record of the batch.
        uint256 stamp = (uint256(uint64(block.number)) << 128) | (uint256(uint64(block.timestamp)) << 64);
        for (uint256 i = 0; i < length;) {
            RecordInput calldata input = records[i];
            bytes32 recordId = input.recordId;
            bytes32 deviceId = input.deviceId;
            SecurityMode mode = input.mode;
            if (recordId == bytes32(0) || deviceId == bytes32(0) || mode == SecurityMode.Unspecified) {
                revert InvalidRecord(i);
            }
            StoredRecord storage slot = _records[recordId];
            if (slot.meta != 0) {
                emit RecordSkipped(deviceId, recordId);
            } else {
                uint64 sequence = input.sequence;
                bytes32 payloadHash = input.payloadHash;
                bool published = publishing && payloads[i].length != 0;
                slot.payloadHash = payloadHash;
                slot.meta = stamp | sequence | (uint256(mode) << 192) | (published ? 1 << 200 : 0)
                    | (_indexOf(deviceId) << 224);
                emit RecordStored(deviceId, recordId, sequence, payloadHash, mode);
                if (published) emit PayloadPublished(recordId, payloads[i]);
                ++recorded;
            }
            unchecked {
                ++i;
            }
        }
        emit BatchRecorded(recorded, length - recorded);
    }

    /// @dev The device's 1-based index in `_devices`, assigned at its first record.
    function _indexOf(bytes32 deviceId) private returns (uint256 index) {
        index = _deviceIndex[deviceId];
        if (index == 0) {
            index = _devices.length + 1;
            if (index > type(uint32).max) revert TooManyDevices();
            _devices.push(deviceId);
            _deviceIndex[deviceId] = index;
        }
    }

    /// @notice Anchor the Merkle root of a batch of records kept off-chain. Anchoring a
    ///         root twice is a no-op with {AnchorSkipped}, so retries are idempotent.
    /// @return anchored false when the root was already anchored.
    function anchorRoot(bytes32 root, uint64 count, bytes32 firstRecordId, bytes32 lastRecordId)
        external
        onlyRole(NOTARY_ROLE)
        returns (bool anchored)
    {
        if (root == bytes32(0) || count == 0) revert InvalidAnchor();
        Anchor storage slot = _anchors[root];
        if (slot.anchoredAt != 0) {
            emit AnchorSkipped(root);
            return false;
        }
        slot.firstRecordId = firstRecordId;
        slot.lastRecordId = lastRecordId;
        slot.count = count;
        slot.anchoredAt = uint64(block.timestamp);
        slot.blockNumber = uint64(block.number);
        emit RootAnchored(root, count, firstRecordId, lastRecordId);
        return true;
    }

    /// @notice Whether `recordId` was stored by {recordBatch}.
    function isRecorded(bytes32 recordId) external view returns (bool) {
        return _records[recordId].meta != 0;
    }

    /// @notice The stored record; `recordedAt == 0` means "no such record".
    function getRecord(bytes32 recordId) external view returns (Record memory) {
        StoredRecord storage stored = _records[recordId];
        uint256 meta = stored.meta;
        uint256 index = meta >> 224;
        return Record({
            deviceId: index == 0 ? bytes32(0) : _devices[index - 1],
            payloadHash: stored.payloadHash,
            sequence: uint64(meta),
            recordedAt: uint64(meta >> 64),
            blockNumber: uint64(meta >> 128),
            mode: SecurityMode(uint8(meta >> 192)),
            payloadPublished: (meta >> 200) & 1 == 1
        });
    }

    /// @notice The anchor of `root`; `anchoredAt == 0` means "not anchored".
    function getAnchor(bytes32 root) external view returns (Anchor memory) {
        return _anchors[root];
    }

    /// @notice True when `root` is anchored here and `proof` proves `leaf` under it.
    function verifyInclusion(bytes32 leaf, bytes32[] calldata proof, bytes32 root) external view returns (bool) {
        return _anchors[root].anchoredAt != 0 && MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// @notice The Merkle leaf of a record, so an auditor can compute it from an explorer.
    function leafHash(bytes32 recordId, bytes32 deviceId, uint64 sequence, bytes32 payloadHash, SecurityMode mode)
        external
        pure
        returns (bytes32)
    {
        return keccak256(bytes.concat(keccak256(abi.encode(recordId, deviceId, sequence, payloadHash, mode))));
    }
}
