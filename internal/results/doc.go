// Package results writes what became of an invoice next to it in the invoice bucket, in the
// same documents whichever way the invoice was sent (one by one in an online session, or in a
// batch session):
//
//	<result prefix><invoice key>.upo.xml      the UPO (KSeF's official receipt), byte for byte
//	<result prefix><invoice key>.result.json  a Result: KSeF number, dates, reference numbers, ...
//	<result prefix><invoice key>.error.json   a Report: why it was not accepted
//
// A Result is written only after its UPO, so that a reader who finds the result finds the UPO
// too. A duplicate upload (the same content taken in before) gets a DuplicateNotice in place of
// a result. The invoice itself is never moved or changed.
//
// A 440 from KSeF (an invoice with this seller, type and number is already there) is
// reconciled to the original only when ConfirmDuplicate finds, in the original's UPO, the
// original listed with this invoice's hash; an invoice number reused for other content, or a
// duplicate that cannot be checked, is a rejection.
//
// # Use
//
//	st := results.NewStore(s3Client, bucket, "results/")
//	upo, err := results.FetchUPO(ctx, client, sessionRef, status.KSeFNumber, status.UPODownloadURL, log)
//	upoKey := st.Key(obj, results.UPOSuffix)
//	err = st.PutXML(ctx, upoKey, upo.Content)
//	res := results.NewResult(results.StatusAccepted, nip, obj, sub, status, time.Now())
//	res.UPO = &results.UPO{Key: upoKey, Hash: upo.Hash}
//	res.QRCodeURL = results.VerificationURL(client.QRBaseURL(), nip, sub)
//	err = st.PutJSON(ctx, st.Key(obj, results.ResultSuffix), res)
//
//	// On a 440: the original's UPO, or a *flow.RejectedError.
//	orig, err := results.ConfirmDuplicate(ctx, client, status, sub.InvoiceHash)
package results
