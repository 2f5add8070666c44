//! The log store's candidate second engine, measured by `bench logs` side by side with the
//! SQLite FTS5 store on the same corpus and query shapes: tantivy 0.27 (pure Rust, MIT;
//! crates.io `tantivy`, source github.com/quickwit-oss/tantivy). Bench-only: the same fields as
//! `autogit_drivers::logstore` (the scrubbed message as full text with positions for phrases,
//! the enrichment's fields as exact terms, the time and the HTTP status as fast fields) and the
//! same query language (`autogit_core::logs::Query`), newest first.

use autogit_core::logs::{Enriched, Field as QField, Level, Query, status_range};
use std::ops::Bound;
use std::path::Path;
use tantivy::collector::TopDocs;
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, PhraseQuery, Query as TQuery, RangeQuery, TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TantivyDocument, Value,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, Order, Term};

#[derive(Clone, Copy)]
struct Fields {
    at: Field,
    service: Field,
    level: Field,
    class: Field,
    class_tail: Field,
    status: Field,
    request: Field,
    trace: Field,
    job: Field,
    ip: Field,
    url: Field,
    message: Field,
}

pub struct TantivyStore {
    index: Index,
    writer: Option<IndexWriter>,
    reader: Option<IndexReader>,
    f: Fields,
    analyzer: TextAnalyzer,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        at: b.add_i64_field("at", INDEXED | FAST | STORED),
        service: b.add_text_field("service", STRING | STORED),
        level: b.add_text_field("level", STRING | STORED),
        class: b.add_text_field("class", STRING | STORED),
        class_tail: b.add_text_field("class_tail", STRING),
        status: b.add_u64_field("status", INDEXED | FAST | STORED),
        request: b.add_text_field("request_id", STRING | STORED),
        trace: b.add_text_field("trace_id", STRING | STORED),
        job: b.add_text_field("job_id", STRING | STORED),
        ip: b.add_text_field("ip", STRING),
        url: b.add_text_field("url", STRING),
        message: b.add_text_field("message", TEXT | STORED),
    };
    (b.build(), f)
}

impl TantivyStore {
    /// A new index in `dir`; one indexing thread with `budget` bytes of memory.
    pub fn create(dir: &Path, budget: usize) -> tantivy::Result<Self> {
        let (schema, f) = schema();
        let index = Index::create_in_dir(dir, schema)?;
        let writer = index.writer_with_num_threads(1, budget)?;
        let analyzer = index.tokenizer_for_field(f.message)?;
        Ok(Self {
            index,
            writer: Some(writer),
            reader: None,
            f,
            analyzer,
        })
    }

    /// Adds one enriched line (buffered until [`Self::commit`]).
    pub fn add(&mut self, at_ns: i64, service: &str, e: &Enriched) -> tantivy::Result<()> {
        let f = self.f;
        let mut d = TantivyDocument::new();
        d.add_i64(f.at, at_ns);
        d.add_text(f.service, service);
        d.add_text(f.level, e.level.unwrap_or(Level::Unknown).as_str());
        if let Some(c) = &e.error_class {
            d.add_text(f.class, c);
            d.add_text(f.class_tail, c.rsplit(['.', ':']).next().unwrap_or(c));
        }
        if let Some(s) = e.http_status {
            d.add_u64(f.status, u64::from(s));
        }
        for (field, v) in [
            (f.request, &e.request_id),
            (f.trace, &e.trace_id),
            (f.job, &e.job_id),
        ] {
            if let Some(v) = v {
                d.add_text(field, v);
            }
        }
        for ip in &e.ips {
            d.add_text(f.ip, ip);
        }
        for url in &e.urls {
            d.add_text(f.url, url);
        }
        d.add_text(f.message, &e.message);
        self.writer
            .as_ref()
            .expect("writer open")
            .add_document(d)
            .map(drop)
    }

    pub fn commit(&mut self) -> tantivy::Result<()> {
        self.writer
            .as_mut()
            .expect("writer open")
            .commit()
            .map(drop)
    }

    /// Commits, waits for the background merges and opens the reader.
    pub fn finish(&mut self) -> tantivy::Result<()> {
        self.commit()?;
        if let Some(w) = self.writer.take() {
            w.wait_merging_threads()?;
        }
        self.reader = Some(self.index.reader()?);
        Ok(())
    }

    /// Words and phrases as the message field's analyzer cuts them: one token a term, more a
    /// phrase (as FTS5 reads a quoted string).
    fn text_query(&mut self, text: &str) -> Box<dyn TQuery> {
        let mut terms = Vec::new();
        let field = self.f.message;
        self.analyzer
            .token_stream(text)
            .process(&mut |t| terms.push(Term::from_field_text(field, &t.text)));
        match terms.len() {
            0 => Box::new(AllQuery),
            1 => Box::new(TermQuery::new(
                terms.remove(0),
                IndexRecordOption::WithFreqs,
            )),
            _ => Box::new(PhraseQuery::new(terms)),
        }
    }

    fn exact(field: Field, v: &str) -> Box<dyn TQuery> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, v),
            IndexRecordOption::Basic,
        ))
    }

    /// The query language of the FTS5 store: words and phrases (all of them), `-word`, the
    /// field filters and the time range; newest first, at most `limit`, each hit's message
    /// read back from the store (as the FTS5 store returns whole rows).
    pub fn search(&mut self, q: &Query, from_ns: i64, to_ns: i64, limit: usize) -> Vec<String> {
        let f = self.f;
        let mut clauses: Vec<(Occur, Box<dyn TQuery>)> = Vec::new();
        for w in q.words.iter().chain(&q.phrases) {
            let t = self.text_query(w);
            clauses.push((Occur::Must, t));
        }
        for n in &q.not {
            let t = self.text_query(n);
            clauses.push((Occur::MustNot, t));
        }
        clauses.push((
            Occur::Must,
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(f.at, from_ns)),
                Bound::Included(Term::from_field_i64(f.at, to_ns)),
            )),
        ));
        for (field, value) in &q.filters {
            let c: Box<dyn TQuery> = match field {
                QField::Service => Self::exact(f.service, value),
                QField::Level => Self::exact(
                    f.level,
                    Level::parse(value).unwrap_or(Level::Unknown).as_str(),
                ),
                QField::Status => {
                    let (lo, hi) = status_range(value).unwrap_or((0, 0));
                    Box::new(RangeQuery::new(
                        Bound::Included(Term::from_field_u64(f.status, u64::from(lo))),
                        Bound::Included(Term::from_field_u64(f.status, u64::from(hi))),
                    ))
                }
                QField::Class => {
                    let tail = value.rsplit(['.', ':']).next().unwrap_or(value);
                    if tail == value {
                        Self::exact(f.class_tail, tail)
                    } else {
                        Self::exact(f.class, value)
                    }
                }
                QField::Ip => Self::exact(f.ip, value),
                QField::Url => Self::exact(f.url, value),
                QField::Request => Self::exact(f.request, value),
                QField::Trace => Self::exact(f.trace, value),
                QField::Job => Self::exact(f.job, value),
            };
            clauses.push((Occur::Must, c));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.as_ref().expect("finish() first").searcher();
        let top = searcher
            .search(
                &query,
                &TopDocs::with_limit(limit).order_by_fast_field::<i64>("at", Order::Desc),
            )
            .expect("tantivy search");
        top.into_iter()
            .map(|(_, addr)| {
                let d: TantivyDocument = searcher.doc(addr).expect("stored doc");
                d.get_first(f.message)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}
