// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @notice The part of DeviceRegistry the notary contract consults.
interface IDeviceRegistry {
    function isActive(bytes32 deviceId) external view returns (bool);
}

/// @title TelemetryNotary
/// @notice On-chain evidence of QKD-authenticated IoT telemetry: records written in
///         batches (one transaction, many records) and Merkle roots anchoring large
///         batches whose inclusion proofs travel in the notary's receipts.
/// @dev Every claim a receipt makes about a record is committed here, in its leaf:
///      keccak256(bytes.concat(keccak256(abi.encode(RecordInput)))) (OpenZeppelin
///      StandardMerkleTree convention, {leafHash}): record and device IDs, sequence,
///      payload hash, security mode, key path, firmware digest, the device's trust verdict
///      after the message, and the device's and the notary's timestamps. `payloadHash` is
///      keccak256(salt || payload) with a secret per-record salt (derived from the
///      message's QKD keys), so low-entropy telemetry cannot be guessed from the chain.
///      Device IDs use the DeviceRegistry encoding (UTF-8, zero-padded to 32 bytes).
///      Batch mode stores each record's leaf and consults the registry: only registered,
///      active devices' records are stored; Merkle mode stores roots only.
contract TelemetryNotary is AccessControlDefaultAdminRules {
    /// @notice May write records and anchor roots (the notary service accounts).
    bytes32 public constant NOTARY_ROLE = keccak256("NOTARY_ROLE");

    /// @notice How the telemetry was protected between device and notary (the envelope
    ///         mode); what that guarantees also depends on the key path.
    enum SecurityMode {
        Unspecified, // never stored; a record with it is refused
        OTP, // one-time pad + one-time Poly1305 key
        AEAD, // AES-256-GCM under a QKD session key
        HYBRID // AES-256-GCM under a key combining a QKD key and an ML-KEM secret
    }

    /// @dev keyPath: byte 0 the link between the KMEs, byte 1 the delivery of the keys to
    ///      the device, byte 2 their delivery to the notary (codes in docs/security-levels.md).
    struct RecordInput {
        bytes32 recordId;
        bytes32 deviceId;
        uint64 sequence;
        bytes32 payloadHash;
        SecurityMode mode;
        uint32 keyPath;
        bytes32 firmwareDigest;
        bool deviceTrusted;
        uint64 sentAtMs;
        uint64 acceptedAtMs;
    }

    struct Record {
        bytes32 deviceId;
        bytes32 leaf;
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

    /// @dev A record as stored: its leaf (the commitment to every field) and one word
    ///      packed by hand, so writing a record is two plain SSTOREs (bits 0-63 sequence,
    ///      64-127 recordedAt, 128-191 blockNumber, 192-199 mode, 200 payloadPublished,
    ///      224-255 the device's 1-based index in `_devices`).
    struct StoredRecord {
        bytes32 leaf;
        uint256 meta;
    }

    mapping(bytes32 recordId => StoredRecord) private _records;
    /// @dev Device IDs in order of their first record; `_deviceIndex` is 1-based into it.
    bytes32[] private _devices;
    mapping(bytes32 deviceId => uint256) private _deviceIndex;
    mapping(bytes32 root => Anchor) private _anchors;

    event RecordStored(bytes32 indexed deviceId, bytes32 indexed recordId, bytes32 leaf, RecordInput record);
    event PayloadPublished(bytes32 indexed recordId, bytes payload);
    /// @notice The same record was stored before (a retried batch): nothing changed.
    event RecordSkipped(bytes32 indexed deviceId, bytes32 indexed recordId);
    /// @notice A record ID already stored with other content: the stored one stays.
    event RecordConflict(
        bytes32 indexed recordId, bytes32 indexed storedDeviceId, bytes32 storedLeaf, bytes32 refusedLeaf
    );
    /// @notice The device is not registered or was deactivated: the record is not stored.
    event RecordRefused(bytes32 indexed deviceId, bytes32 indexed recordId);
    event BatchRecorded(uint256 recorded, uint256 notRecorded);
    event RootAnchored(bytes32 indexed root, uint64 count, bytes32 firstRecordId, bytes32 lastRecordId);
    event AnchorSkipped(bytes32 indexed root);

    error InvalidRecord(uint256 index);
    error PayloadCountMismatch(uint256 records, uint256 payloads);
    error InvalidAnchor();
    error TooManyDevices();
    error InvalidAccount(address account);
    error InvalidRegistry(address registry);

    /// @param adminDelay seconds between scheduling and accepting an admin transfer.
    constructor(uint48 adminDelay, address admin, address notary, address registry_)
        AccessControlDefaultAdminRules(adminDelay, admin)
    {
        if (notary == address(0)) revert InvalidAccount(notary);
        if (registry_.code.length == 0) revert InvalidRegistry(registry_);
        _grantRole(NOTARY_ROLE, notary);
        registry = registry_;
    }

    /// @notice Store many records in one transaction. A record whose ID is already stored
    ///         is skipped ({RecordSkipped}, or {RecordConflict} when its content differs)
    ///         and a record of a device that is not active in the registry is refused
    ///         ({RecordRefused}), instead of reverting the batch, so a retried batch is
    ///         idempotent and one bad record cannot hold the others back.
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
        IDeviceRegistry devices = IDeviceRegistry(registry);
        bytes32 checkedDevice; // batches usually hold runs of one device: ask once per run
        bool checkedActive;
        for (uint256 i = 0; i < length;) {
            RecordInput calldata input = records[i];
            bytes32 recordId = input.recordId;
            bytes32 deviceId = input.deviceId;
            if (recordId == bytes32(0) || deviceId == bytes32(0) || input.mode == SecurityMode.Unspecified) {
                revert InvalidRecord(i);
            }
            if (deviceId != checkedDevice) {
                checkedDevice = deviceId;
                checkedActive = devices.isActive(deviceId);
            }
            bytes32 leaf = _leaf(input);
            StoredRecord storage slot = _records[recordId];
            uint256 meta = slot.meta;
            if (meta != 0) {
                bytes32 storedDevice = _devices[(meta >> 224) - 1];
                if (slot.leaf == leaf) {
                    emit RecordSkipped(storedDevice, recordId);
                } else {
                    emit RecordConflict(recordId, storedDevice, slot.leaf, leaf);
                }
            } else if (!checkedActive) {
                emit RecordRefused(deviceId, recordId);
            } else {
                bool published = publishing && payloads[i].length != 0;
                slot.leaf = leaf;
                slot.meta = stamp | input.sequence | (uint256(input.mode) << 192) | (published ? 1 << 200 : 0)
                    | (_indexOf(deviceId) << 224);
                emit RecordStored(deviceId, recordId, leaf, input);
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

    /// @notice The stored record; `recordedAt == 0` means "no such record". Its `leaf`
    ///         commits to every field of the record ({leafHash}).
    function getRecord(bytes32 recordId) external view returns (Record memory) {
        StoredRecord storage stored = _records[recordId];
        uint256 meta = stored.meta;
        uint256 index = meta >> 224;
        return Record({
            deviceId: index == 0 ? bytes32(0) : _devices[index - 1],
            leaf: stored.leaf,
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

    /// @notice True when `root` is anchored here and `proof` proves the leaf of `record`
    ///         under it. The leaf is computed from the record, never taken from the caller,
    ///         so an internal node of the tree cannot pass for a record.
    function verifyInclusion(RecordInput calldata record, bytes32[] calldata proof, bytes32 root)
        external
        view
        returns (bool)
    {
        return _anchors[root].anchoredAt != 0 && MerkleProof.verifyCalldata(proof, root, _leaf(record));
    }

    /// @notice The Merkle leaf of a record, so an auditor can compute it from an explorer.
    function leafHash(RecordInput calldata record) external pure returns (bytes32) {
        return _leaf(record);
    }

    function _leaf(RecordInput calldata record) private pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(record))));
    }
}
