// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";

/// @title DeviceRegistry
/// @notice Registry of the IoT devices whose telemetry the qkd-notary records, with an
///         append-only history of the firmware digests each device reported.
/// @dev Device IDs are the UTF-8 device name right-padded with zero bytes to 32 bytes
///      (at most 32 bytes, no NUL), so an explorer shows them as readable hex.
///      Each device has one approved firmware digest. A device is trusted while it is
///      active and its last attested digest is the approved one. With no expected digest
///      at registration, the first attested digest becomes the approved one (trust on
///      first use). A later, different digest is recorded and emits {FirmwareChanged};
///      unless the operator approved exactly that digest beforehand (a planned update)
///      the device is untrusted until an operator approves it.
///      Duties are separate: the admin (two-step, delayed transfer; held offline or by a
///      multisig) only manages roles; operators (people) register, approve and deactivate;
///      notaries (online services) only attest what authenticated telemetry reported. An
///      attestation is recorded once per (device, digest, message sequence), so a notary
///      that re-sends one after a crash or a chain rollback cannot inflate the history.
contract DeviceRegistry is AccessControlDefaultAdminRules {
    /// @notice May register, deactivate devices and approve firmware digests (a person's key).
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @notice May record firmware attestations (the notary service accounts).
    bytes32 public constant NOTARY_ROLE = keccak256("NOTARY_ROLE");

    struct Device {
        string saeId; // ETSI GS QKD 014 SAE ID the device's keys are delivered to
        address owner;
        bytes32 approvedFirmware; // zero until registration with an expected digest, approval or first use
        bytes32 lastFirmware; // last attested digest; zero before the first attestation
        uint64 registeredAt;
        uint64 lastChangeAt; // block time of the last digest change (or first attestation)
        uint32 attestationCount;
        bool active;
    }

    struct Attestation {
        bytes32 digest;
        uint64 sequence; // sequence number of the telemetry message that reported it
        uint64 attestedAt;
        uint64 blockNumber;
        bool changed; // differs from the previous attested digest
        bool trusted; // trust status right after this attestation
    }

    mapping(bytes32 deviceId => Device) private _devices;
    mapping(bytes32 deviceId => Attestation[]) private _attestations;
    /// @dev keccak256(deviceId, digest, sequence) of every attestation recorded.
    mapping(bytes32 attestationKey => bool) private _attested;
    bytes32[] private _deviceIds;

    event DeviceRegistered(bytes32 indexed deviceId, string saeId, address indexed owner, bytes32 expectedFirmware);
    event DeviceDeactivated(bytes32 indexed deviceId);
    event FirmwareAttested(
        bytes32 indexed deviceId, bytes32 indexed digest, uint64 sequence, bool changed, bool trusted
    );
    event AttestationSkipped(bytes32 indexed deviceId, bytes32 indexed digest, uint64 sequence);
    event FirmwareChanged(bytes32 indexed deviceId, bytes32 previousDigest, bytes32 newDigest);
    event FirmwareApproved(bytes32 indexed deviceId, bytes32 indexed digest, address indexed approver);

    error InvalidDeviceId();
    error InvalidOwner();
    error InvalidDigest();
    error DeviceAlreadyRegistered(bytes32 deviceId);
    error UnknownDevice(bytes32 deviceId);
    error DeviceInactive(bytes32 deviceId);
    error AttestationIndexOutOfRange(bytes32 deviceId, uint256 index);
    error InvalidAccount(address account);

    /// @param adminDelay seconds between scheduling and accepting an admin transfer.
    constructor(uint48 adminDelay, address admin, address operator, address notary)
        AccessControlDefaultAdminRules(adminDelay, admin)
    {
        if (operator == address(0)) revert InvalidAccount(operator);
        if (notary == address(0)) revert InvalidAccount(notary);
        _grantRole(OPERATOR_ROLE, operator);
        _grantRole(NOTARY_ROLE, notary);
    }

    /// @notice Register a device. `expectedFirmware` may be zero (trust on first use).
    function registerDevice(bytes32 deviceId, string calldata saeId, address owner, bytes32 expectedFirmware)
        external
        onlyRole(OPERATOR_ROLE)
    {
        if (deviceId == bytes32(0)) revert InvalidDeviceId();
        if (owner == address(0)) revert InvalidOwner();
        if (_devices[deviceId].registeredAt != 0) revert DeviceAlreadyRegistered(deviceId);
        Device storage device = _devices[deviceId];
        device.saeId = saeId;
        device.owner = owner;
        device.registeredAt = uint64(block.timestamp);
        device.active = true;
        _deviceIds.push(deviceId);
        emit DeviceRegistered(deviceId, saeId, owner, expectedFirmware);
        if (expectedFirmware != bytes32(0)) {
            _approve(deviceId, device, expectedFirmware);
        }
    }

    /// @notice Record the firmware digest a device reported in the authenticated telemetry
    ///         message `sequence`. A repeat of the same (device, digest, sequence) changes
    ///         nothing and emits {AttestationSkipped}.
    /// @return trusted the device's trust status after this attestation.
    function attestFirmware(bytes32 deviceId, bytes32 digest, uint64 sequence)
        external
        onlyRole(NOTARY_ROLE)
        returns (bool trusted)
    {
        if (digest == bytes32(0)) revert InvalidDigest();
        Device storage device = _activeDevice(deviceId);
        bytes32 key = keccak256(abi.encode(deviceId, digest, sequence));
        if (_attested[key]) {
            emit AttestationSkipped(deviceId, digest, sequence);
            return device.lastFirmware == device.approvedFirmware;
        }
        _attested[key] = true;
        bytes32 previous = device.lastFirmware;
        bool changed = previous != bytes32(0) && previous != digest;
        if (device.approvedFirmware == bytes32(0)) {
            _approve(deviceId, device, digest); // trust on first use
        }
        if (previous == bytes32(0) || changed) {
            device.lastChangeAt = uint64(block.timestamp);
        }
        if (changed) {
            emit FirmwareChanged(deviceId, previous, digest);
        }
        device.lastFirmware = digest;
        device.attestationCount += 1;
        trusted = digest == device.approvedFirmware;
        _attestations[deviceId].push(
            Attestation({
                digest: digest,
                sequence: sequence,
                attestedAt: uint64(block.timestamp),
                blockNumber: uint64(block.number),
                changed: changed,
                trusted: trusted
            })
        );
        emit FirmwareAttested(deviceId, digest, sequence, changed, trusted);
    }

    /// @notice Make `digest` the device's approved firmware (re-approval after a change,
    ///         or ahead of a planned update); it replaces the previously approved digest.
    function approveFirmware(bytes32 deviceId, bytes32 digest) external onlyRole(OPERATOR_ROLE) {
        if (digest == bytes32(0)) revert InvalidDigest();
        _approve(deviceId, _activeDevice(deviceId), digest);
    }

    /// @notice Deactivate a device for good; its history stays readable.
    function deactivateDevice(bytes32 deviceId) external onlyRole(OPERATOR_ROLE) {
        Device storage device = _activeDevice(deviceId);
        device.active = false;
        emit DeviceDeactivated(deviceId);
    }

    /// @notice Registered and not deactivated: its telemetry may be recorded.
    function isActive(bytes32 deviceId) external view returns (bool) {
        return _devices[deviceId].active;
    }

    /// @notice Active and running an approved firmware digest.
    function isTrusted(bytes32 deviceId) external view returns (bool) {
        Device storage device = _devices[deviceId];
        return device.active && device.lastFirmware != bytes32(0) && device.lastFirmware == device.approvedFirmware;
    }

    function getDevice(bytes32 deviceId) external view returns (Device memory) {
        return _knownDevice(deviceId);
    }

    function attestationCount(bytes32 deviceId) external view returns (uint256) {
        return _attestations[deviceId].length;
    }

    function getAttestation(bytes32 deviceId, uint256 index) external view returns (Attestation memory) {
        Attestation[] storage history = _attestations[deviceId];
        if (index >= history.length) revert AttestationIndexOutOfRange(deviceId, index);
        return history[index];
    }

    /// @notice The most recent attestation of a device (what an auditor checks first).
    function latestAttestation(bytes32 deviceId) external view returns (Attestation memory) {
        Attestation[] storage history = _attestations[deviceId];
        if (history.length == 0) revert AttestationIndexOutOfRange(deviceId, 0);
        return history[history.length - 1];
    }

    function deviceCount() external view returns (uint256) {
        return _deviceIds.length;
    }

    function deviceIdAt(uint256 index) external view returns (bytes32) {
        return _deviceIds[index];
    }

    function _approve(bytes32 deviceId, Device storage device, bytes32 digest) private {
        device.approvedFirmware = digest;
        emit FirmwareApproved(deviceId, digest, msg.sender);
    }

    function _knownDevice(bytes32 deviceId) private view returns (Device storage device) {
        device = _devices[deviceId];
        if (device.registeredAt == 0) revert UnknownDevice(deviceId);
    }

    function _activeDevice(bytes32 deviceId) private view returns (Device storage device) {
        device = _knownDevice(deviceId);
        if (!device.active) revert DeviceInactive(deviceId);
    }
}
