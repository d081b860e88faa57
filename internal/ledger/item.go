package ledger

import (
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// Attribute names of the items. Every item has pk and kind.
const (
	attrPK              = "pk"
	attrKind            = "kind"
	attrInvoiceID       = "invoiceId"
	attrNIP             = "nip"
	attrSource          = "source"
	attrBucket          = "bucket"
	attrObjectKey       = "objectKey"
	attrVersionID       = "versionId"
	attrInvoiceHash     = "invoiceHash"
	attrInvoiceNumber   = "invoiceNumber"
	attrStatus          = "status"
	attrKSeFNumber      = "ksefNumber"
	attrAcquisitionDate = "acquisitionDate"
	attrReconciled      = "reconciled"
	attrSessionRef      = "sessionReferenceNumber"
	attrInvoiceRef      = "invoiceReferenceNumber"
	attrResultKey       = "resultKey"
	attrUPOKey          = "upoKey"
	attrReason          = "reason"
	attrDuplicateOf     = "duplicateOf"
	attrExecutionName   = "executionName"
	attrCreatedAt       = "createdAt"
	attrUpdatedAt       = "updatedAt"
	attrVersion         = "version"
	attrRequestHash     = "requestHash"
)

// Item kinds: an invoice (pk INV#<id>), a content claim (HASH#<nip>#<invoiceHash>) and an
// idempotency key (IDEM#<nip>#<sha256 of the key>).
const (
	kindInvoice     = "invoice"
	kindContent     = "content"
	kindIdempotency = "idempotency"
)

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// formatTime is the stored form of a time: RFC 3339 in UTC with nanoseconds, which sorts as
// text.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func getS(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func encodeInvoice(inv *Invoice) map[string]types.AttributeValue {
	item := map[string]types.AttributeValue{
		attrPK:        str(invoiceKey(inv.ID)),
		attrKind:      str(kindInvoice),
		attrInvoiceID: str(inv.ID),
		attrSource:    str(string(inv.Source)),
		attrStatus:    str(string(inv.Status)),
		attrCreatedAt: str(formatTime(inv.CreatedAt)),
		attrUpdatedAt: str(formatTime(inv.UpdatedAt)),
		attrVersion:   num(inv.Version),
	}
	for name, v := range map[string]string{
		attrNIP: inv.NIP, attrBucket: inv.Object.Bucket, attrObjectKey: inv.Object.Key, attrVersionID: inv.Object.VersionID,
		attrInvoiceHash: inv.InvoiceHash, attrInvoiceNumber: inv.InvoiceNumber, attrKSeFNumber: inv.KSeFNumber,
		attrSessionRef: inv.SessionReferenceNumber, attrInvoiceRef: inv.InvoiceReferenceNumber,
		attrResultKey: inv.ResultKey, attrUPOKey: inv.UPOKey, attrDuplicateOf: inv.DuplicateOf, attrExecutionName: inv.ExecutionName,
	} {
		if v != "" {
			item[name] = str(v)
		}
	}
	if !inv.AcquisitionDate.IsZero() {
		item[attrAcquisitionDate] = str(formatTime(inv.AcquisitionDate))
	}
	if inv.Reconciled {
		item[attrReconciled] = &types.AttributeValueMemberBOOL{Value: true}
	}
	if inv.Reason != nil {
		item[attrReason] = encodeReason(inv.Reason)
	}
	return item
}

func encodeReason(r *Reason) types.AttributeValue {
	m := map[string]types.AttributeValue{"message": str(r.Message)}
	if r.Stage != "" {
		m["stage"] = str(r.Stage)
	}
	if r.Code != 0 {
		m["code"] = num(int64(r.Code))
	}
	if len(r.Details) > 0 {
		l := make([]types.AttributeValue, len(r.Details))
		for i, d := range r.Details {
			l[i] = str(d)
		}
		m["details"] = &types.AttributeValueMemberL{Value: l}
	}
	return &types.AttributeValueMemberM{Value: m}
}

// decodeInvoice reads an invoice item. Attributes it does not know are ignored, so that items
// written by a newer version still read.
func decodeInvoice(item map[string]types.AttributeValue) (*Invoice, error) {
	if k := getS(item, attrKind); k != kindInvoice {
		return nil, fmt.Errorf("item %q is a %q, not an invoice", getS(item, attrPK), k)
	}
	inv := &Invoice{
		ID:     getS(item, attrInvoiceID),
		NIP:    getS(item, attrNIP),
		Source: Source(getS(item, attrSource)),
		Object: flow.S3Object{
			Bucket:    getS(item, attrBucket),
			Key:       getS(item, attrObjectKey),
			VersionID: getS(item, attrVersionID),
		},
		InvoiceHash:            getS(item, attrInvoiceHash),
		InvoiceNumber:          getS(item, attrInvoiceNumber),
		Status:                 Status(getS(item, attrStatus)),
		KSeFNumber:             getS(item, attrKSeFNumber),
		SessionReferenceNumber: getS(item, attrSessionRef),
		InvoiceReferenceNumber: getS(item, attrInvoiceRef),
		ResultKey:              getS(item, attrResultKey),
		UPOKey:                 getS(item, attrUPOKey),
		DuplicateOf:            getS(item, attrDuplicateOf),
		ExecutionName:          getS(item, attrExecutionName),
	}
	if b, ok := item[attrReconciled].(*types.AttributeValueMemberBOOL); ok {
		inv.Reconciled = b.Value
	}
	var err error
	for name, dst := range map[string]*time.Time{attrAcquisitionDate: &inv.AcquisitionDate, attrCreatedAt: &inv.CreatedAt, attrUpdatedAt: &inv.UpdatedAt} {
		if s := getS(item, name); s != "" {
			if *dst, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return nil, fmt.Errorf("invoice %s: attribute %s: %w", inv.ID, name, err)
			}
		}
	}
	if v, ok := item[attrVersion].(*types.AttributeValueMemberN); ok {
		if inv.Version, err = strconv.ParseInt(v.Value, 10, 64); err != nil {
			return nil, fmt.Errorf("invoice %s: attribute %s: %w", inv.ID, attrVersion, err)
		}
	}
	if m, ok := item[attrReason].(*types.AttributeValueMemberM); ok {
		r := &Reason{Stage: getS(m.Value, "stage"), Message: getS(m.Value, "message")}
		if c, ok := m.Value["code"].(*types.AttributeValueMemberN); ok {
			if r.Code, err = strconv.Atoi(c.Value); err != nil {
				return nil, fmt.Errorf("invoice %s: reason code: %w", inv.ID, err)
			}
		}
		if l, ok := m.Value["details"].(*types.AttributeValueMemberL); ok {
			for _, d := range l.Value {
				if s, ok := d.(*types.AttributeValueMemberS); ok {
					r.Details = append(r.Details, s.Value)
				}
			}
		}
		inv.Reason = r
	}
	if inv.ID == "" || !inv.Status.valid() {
		return nil, fmt.Errorf("item %q: invoice without id or with status %q", getS(item, attrPK), inv.Status)
	}
	return inv, nil
}
